"""Exchange entities: buyers (the document's "Accounts"), user lists, publishers, buyers' API
credentials, settings.

Each is written once, as a frozen msgspec Struct whose field types carry the validation: the
same type is an entry of the configuration file (``[[exchange.buyers]]``...), the admin API's
body and answer, and the record the registry keeps in the store (``exchange/codec.py``
encodes and decodes them). Checks that span several fields are ``problems()`` methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import msgspec

from cookiematch.errors import InvalidURL
from cookiematch.formats import CookieDomain, CookieName, Nid, PositiveInt, VendorId
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.protocol.url import parse_absolute_url
from cookiematch.protocol.userid import MAX_KEY_VERSION
from cookiematch.secret import Secret

MAX_LIST_ID = 2**63 - 1
MAX_USER_LISTS_PER_BUYER = 1000  # the default of [exchange] max_user_lists_per_buyer
MIN_WEBHOOK_SECRET_LENGTH = 16

Rate = Annotated[float, msgspec.Meta(gt=0)]
KeyVersion = Annotated[int, msgspec.Meta(ge=0, le=MAX_KEY_VERSION)]
ListId = Annotated[int, msgspec.Meta(gt=0, le=MAX_LIST_ID)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
Action = Literal["alert", "throttle", "suspend_pixel_matching"]
"""What the exchange does about a buyer that breaks a rule (``exchange/enforcement.py``)."""


class Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of the entities: immutable, unknown keys rejected."""


class Enforcement(Strict, frozen=True, kw_only=True):
    """``[exchange.enforcement]``: the rules a buyer's monitoring is judged by over the
    window, and the actions taken when one is broken (docs/auction.md, "Enforcement")."""

    frequency_cap_violation_rate: Fraction = 0.05  # violations / match tags above this...
    min_match_tags: PositiveInt = 100  # ...once at least this many match tags were counted
    on_frequency_cap_violations: tuple[Action, ...] = ("alert",)
    pixel_match_response_rate_below: Fraction = 0.9
    on_low_response_rate: tuple[Action, ...] = ("alert",)
    throttle_factor: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.5  # of the match-tag rate


class Buyer(Strict, frozen=True):
    """A buyer account: its network ID and the redirect URL its match tags lead to."""

    nid: Nid
    redirect_url: RedirectTemplate  # compiled (and so validated) when decoded
    hosted_match: bool = False
    hosted_match_writes_per_second: Rate | None = None  # None: no throttling
    bidder_url: str | None = None  # OpenRTB 2.6 endpoint (POST); None: no bid requests
    push_url: RedirectTemplate | None = None  # pixel-matching URL (google_push, gid, cver)
    pixel_matching: bool = False
    require_hosted_match: bool = False  # pre-targeting: bid requests only with hosted data
    # pre-targeting: bid requests only for current members of one of these (its own) lists
    require_user_lists: tuple[ListId, ...] = ()
    max_qps: Rate | None = None  # bid requests per second per worker; None: unlimited
    max_match_tags_per_second: Rate | None = None  # every worker and instance together
    enforcement: Enforcement | None = None  # None: the exchange's [exchange.enforcement]
    gvl_vendor_id: VendorId | None = None  # its IAB GVL vendor ID, for the privacy policy
    optout_webhook_url: str | None = None  # signed opt-out notices are POSTed here
    optout_webhook_secret: Secret | None = None  # their HMAC-SHA256 key; never shown
    # the [[exchange.keys]] version of its new gids; None (or a version not configured): the
    # newest. Changing it rotates the buyer's keys.
    key_version: KeyVersion | None = None

    def problems(self) -> list[tuple[str, str]]:
        """(key, message) for each rule between this buyer's fields that it breaks."""
        found: list[tuple[str, str]] = []
        for key in ("bidder_url", "optout_webhook_url"):
            url = getattr(self, key)
            if url is not None:
                try:
                    parse_absolute_url(url)
                except InvalidURL as exc:
                    found.append((key, str(exc)))
        secret = self.optout_webhook_secret
        if self.optout_webhook_url is not None and secret is None:
            found.append(("optout_webhook_secret", "required with optout_webhook_url"))
        if secret is not None and self.optout_webhook_url is None:
            found.append(("optout_webhook_url", "required with optout_webhook_secret"))
        if secret is not None and len(secret) < MIN_WEBHOOK_SECRET_LENGTH:
            message = f"must be at least {MIN_WEBHOOK_SECRET_LENGTH} characters"
            found.append(("optout_webhook_secret", message))
        if self.pixel_matching and self.push_url is None:
            found.append(("push_url", "required when pixel_matching = true"))
        if self.require_hosted_match and not self.hosted_match:
            found.append(("require_hosted_match", "needs hosted_match = true"))
        if len(set(self.require_user_lists)) != len(self.require_user_lists):
            found.append(("require_user_lists", "lists a user list twice"))
        return found

    def list_problems(self, owner_of: Callable[[int], str | None]) -> list[tuple[str, str]]:
        """(key, message) for each list of ``require_user_lists`` that does not exist
        (``owner_of`` answers None) or belongs to another buyer."""
        found: list[tuple[str, str]] = []
        for i, list_id in enumerate(self.require_user_lists):
            owner = owner_of(list_id)
            if owner is None:
                found.append((f"require_user_lists[{i}]", f"no user list {list_id}"))
            elif owner != self.nid:
                message = f"user list {list_id} belongs to another buyer"
                found.append((f"require_user_lists[{i}]", message))
        return found


class Publisher(Strict, frozen=True):
    """A site whose pages call ``/ad?pub=<id>``; ``pixel_matching = False`` opts it out;
    ``coppa = True`` marks it child-directed (COPPA): its bid requests carry ``regs.coppa = 1``
    and nothing personal (no cookie, no user IDs, no match)."""

    id: Nid
    pixel_matching: bool = True  # false: the publisher opts out of the additional match
    coppa: bool = False


class UserList(Strict, frozen=True):
    """A user list a buyer may add browsers to with ``google_ula``."""

    id: ListId
    owner: Nid
    closed: bool = False
    membership_days: Annotated[int, msgspec.Meta(ge=1, le=540)] = 30


CredentialScope = Literal["user_lists", "redirect_url"]
"""What a buyer's API credential may do: ``user_lists`` manage its own user lists (create,
replace, delete, members, sizes); ``redirect_url`` read and replace its own redirect URL."""

Scopes = Annotated[tuple[CredentialScope, ...], msgspec.Meta(min_length=1)]
TokenSha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
CREDENTIAL_ID_LENGTH = 16


class Credential(Strict, frozen=True):
    """A buyer's API credential: the SHA-256 (hex) of its token, never the token itself.

    Its ``id`` is the first ``CREDENTIAL_ID_LENGTH`` hex digits of the hash: nothing to
    choose, and nothing that helps to guess the token."""

    nid: Nid
    token_sha256: TokenSha256
    scopes: Scopes = ("user_lists",)
    created_at: float | None = None  # unix seconds; None for one of the configuration

    @property
    def id(self) -> str:
        return self.token_sha256[:CREDENTIAL_ID_LENGTH]

    def problems(self) -> list[tuple[str, str]]:
        if len(set(self.scopes)) != len(self.scopes):
            return [("scopes", "lists a scope twice")]
        return []


class ExchangeSettings(Strict, frozen=True, kw_only=True):
    """Protocol choices and limits of the exchange (docs/protocol.md).

    The keys of ``[exchange]`` that its services read; the configuration's table extends it.
    """

    trusted_proxies: tuple[str, ...] = ()  # IPs or CIDR networks (checked by the config)
    set_cookie_by_default: bool = False
    extras_position: Literal["before", "after"] = "before"
    cookie_name: CookieName = "cm_id"
    cookie_domain: CookieDomain | None = None
    cookie_secure: bool = True
    cookie_max_age_days: Annotated[int, msgspec.Meta(ge=1, le=400)] = 390  # browsers cap at 400
    hosted_match_ttl_days: PositiveInt = 90
    push_token_ttl_seconds: PositiveInt = 3600
    match_expiry_days: PositiveInt = 14  # a pixel match is not introduced again before this
    auction_timeout_ms: Annotated[int, msgspec.Meta(ge=10, le=10_000)] = 120  # OpenRTB tmax
    # opt-out notices to buyers: retried with full jitter below a doubling ceiling from
    # ``first`` to ``max`` seconds, abandoned ``give_up_days`` after the opt-out
    optout_notice_retry_first_seconds: Seconds = 30.0
    optout_notice_retry_max_seconds: Seconds = 3600.0
    optout_notice_give_up_days: Annotated[float, msgspec.Meta(gt=0, le=90)] = 7.0
    # the hosted match table and the user lists are counted (a store scan) this often
    table_sizes_interval_seconds: Annotated[float, msgspec.Meta(ge=60)] = 600.0
    enforcement: Enforcement = Enforcement()
    enforcement_interval_seconds: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 10.0
    # user list IDs one buyer may hold through the admin API (its deleted lists' count too)
    max_user_lists_per_buyer: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = (
        MAX_USER_LISTS_PER_BUYER
    )

    @property
    def extras_first(self) -> bool:
        """Whether extra parameters go before the response ``google_`` parameters."""
        return self.extras_position == "before"
