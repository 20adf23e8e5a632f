"""The match tag request: ``google_*`` operations and the extras to pass through.

Parsing only: statuses (user list permissions, hosted match decoding, push validity) are
decided by the exchange. See docs/protocol.md, "Parsing the match tag".
"""

from __future__ import annotations

from dataclasses import dataclass

from cookiematch.errors import MatchTagError
from cookiematch.protocol.privacy import PRIVACY_PARAMS
from cookiematch.protocol.query import QueryParam, encode_param

MAX_EXTRAS_BYTES = 1024
MAX_USER_LIST_ADDS = 32
MAX_USER_LIST_ID = 2**63 - 1

_RESERVED_PREFIX = "google_"
_PRIVACY_PARAMS = frozenset(PRIVACY_PARAMS)
_MAX_DIGITS = 19


@dataclass(frozen=True, slots=True)
class UserListAdd:
    """One ``google_ula`` entry. ``list_id is None`` when the entry is malformed (status 5)."""

    raw_id: str
    list_id: int | None
    timestamp: int | None


@dataclass(frozen=True, slots=True)
class MatchTagRequest:
    nid: str
    cookie_match: bool
    set_cookie: bool | None  # True: google_sc, False: google_no_sc, None: neither
    user_list_adds: tuple[UserListAdd, ...]
    hosted_match: str | None  # raw google_hm value
    hosted_match_duplicated: bool
    push: str | None
    push_duplicated: bool
    cookie_test: bool  # google_tc: this is the cookie-verification hop
    extras: tuple[QueryParam, ...]  # only the privacy parameters when dropped for size
    extras_dropped: bool
    params: tuple[QueryParam, ...]  # everything as parsed, for the self-redirect

    @property
    def has_operation(self) -> bool:
        return bool(
            self.cookie_match
            or self.user_list_adds
            or self.hosted_match is not None
            or self.push is not None
            or self.hosted_match_duplicated
            or self.push_duplicated
        )


def parse_user_list_add(value: str | None) -> UserListAdd:
    """``userlistid[,timestamp]``; a malformed entry has ``list_id`` and ``timestamp`` None.

    The list id must be a positive decimal integer of at most 19 ASCII digits that fits a
    signed 64-bit integer; the timestamp, if a comma is present, a non-negative integer of at
    most 19 digits. ``raw_id`` is the text before the first comma, echoed in the redirect.
    """
    if value is None:
        return UserListAdd("", None, None)
    raw_id, comma, raw_ts = value.partition(",")
    if not _is_decimal(raw_id):
        return UserListAdd(raw_id, None, None)
    list_id = int(raw_id)
    if list_id == 0 or list_id > MAX_USER_LIST_ID:
        return UserListAdd(raw_id, None, None)
    if not comma:
        return UserListAdd(raw_id, list_id, None)
    if not _is_decimal(raw_ts):
        return UserListAdd(raw_id, None, None)
    return UserListAdd(raw_id, list_id, int(raw_ts))


def _is_decimal(text: str) -> bool:
    """1 to 19 ASCII digits (str.isdigit alone would accept other scripts' digits)."""
    return 0 < len(text) <= _MAX_DIGITS and text.isascii() and text.isdigit()


def parse_match_tag(params: tuple[QueryParam, ...]) -> MatchTagRequest:
    """Classify parsed parameters; raise MatchTagError if google_nid is missing/duplicated.

    ``google_`` names are matched case-sensitively. Entries of ``google_ula`` beyond
    ``MAX_USER_LIST_ADDS`` are kept with ``list_id=None`` so that they are answered with
    status 5 and never performed.
    """
    nid: str | None = None
    cookie_match = False
    sc = False
    no_sc = False
    user_list_adds: list[UserListAdd] = []
    hosted_match: str | None = None
    hosted_match_duplicated = False
    push: str | None = None
    push_duplicated = False
    cookie_test = False
    extras: list[QueryParam] = []

    for param in params:
        name = param.name
        if not name.startswith(_RESERVED_PREFIX):
            extras.append(param)
            continue
        if name == "google_nid":
            if nid is not None:
                raise MatchTagError("google_nid is duplicated")
            if not param.value:
                raise MatchTagError("google_nid is empty")
            nid = param.value
        elif name == "google_cm":
            cookie_match = True
        elif name == "google_ula":
            if len(user_list_adds) < MAX_USER_LIST_ADDS:
                user_list_adds.append(parse_user_list_add(param.value))
            else:
                raw = param.value or ""
                user_list_adds.append(UserListAdd(raw.partition(",")[0], None, None))
        elif name == "google_hm":
            if hosted_match is None:
                hosted_match = param.value or ""
            else:
                hosted_match_duplicated = True
        elif name == "google_push":
            if push is None:
                push = param.value or ""
            else:
                push_duplicated = True
        elif name == "google_sc":
            sc = True
        elif name == "google_no_sc":
            no_sc = True
        elif name == "google_tc":
            cookie_test = True
        # every other google_* parameter is dropped

    if nid is None:
        raise MatchTagError("google_nid is missing")

    extras_dropped = False
    if extras:
        # the privacy parameters are the consent the exchange judged: the buyer must judge by
        # them too, so they are neither counted nor dropped (protocol.privacy bounds each)
        size = -1  # the '&' separators
        for param in extras:
            if param.name not in _PRIVACY_PARAMS:
                size += 1 + len(encode_param(param))
                if size > MAX_EXTRAS_BYTES:
                    extras_dropped = True
                    break
    return MatchTagRequest(
        nid=nid,
        cookie_match=cookie_match,
        set_cookie=False if no_sc else (True if sc else None),
        user_list_adds=tuple(user_list_adds),
        hosted_match=hosted_match,
        hosted_match_duplicated=hosted_match_duplicated,
        push=push,
        push_duplicated=push_duplicated,
        cookie_test=cookie_test,
        extras=_privacy_only(extras) if extras_dropped else tuple(extras),
        extras_dropped=extras_dropped,
        params=params,
    )


def _privacy_only(extras: list[QueryParam]) -> tuple[QueryParam, ...]:
    return tuple(p for p in extras if p.name in _PRIVACY_PARAMS)
