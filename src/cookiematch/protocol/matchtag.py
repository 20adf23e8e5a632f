"""The match tag request: ``google_*`` operations and the extras to pass through."""

from __future__ import annotations

from dataclasses import dataclass

from cookiematch.protocol.query import QueryParam

MAX_EXTRAS_BYTES = 1024
MAX_USER_LIST_ADDS = 32


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
    extras: tuple[QueryParam, ...]  # empty when dropped for size
    extras_dropped: bool
    params: tuple[QueryParam, ...]  # everything as parsed, for the self-redirect

    @property
    def has_operation(self) -> bool:
        return bool(
            self.cookie_match or self.user_list_adds or self.hosted_match is not None
            or self.push is not None or self.hosted_match_duplicated or self.push_duplicated
        )


def parse_match_tag(params: tuple[QueryParam, ...]) -> MatchTagRequest:
    """Classify parsed parameters; raise MatchTagError if google_nid is missing/duplicated."""
    raise NotImplementedError
