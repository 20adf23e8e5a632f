"""Exchange domain values: buyers (the document's "Accounts"), user lists, settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from cookiematch.protocol.redirect import RedirectTemplate


@dataclass(frozen=True, slots=True)
class Buyer:
    """A buyer account: its network ID and the redirect URL its match tags lead to."""

    nid: str
    redirect: RedirectTemplate
    hosted_match: bool = False
    hosted_match_writes_per_second: float | None = None  # None: no throttling
    bidder_url: str | None = None  # OpenRTB endpoint; None: never sent bid requests
    push_url: RedirectTemplate | None = None  # pixel-matching URL (google_push, gid, cver)
    pixel_matching: bool = False
    require_hosted_match: bool = False  # pre-targeting: bid requests only with hosted data
    max_qps: float | None = None  # bid requests per second per worker; None: unlimited

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "nid": self.nid,
            "redirect_url": self.redirect.url,
            "hosted_match": self.hosted_match,
        }
        if self.hosted_match_writes_per_second is not None:
            data["hosted_match_writes_per_second"] = self.hosted_match_writes_per_second
        if self.bidder_url is not None:
            data["bidder_url"] = self.bidder_url
        if self.push_url is not None:
            data["push_url"] = self.push_url.url
        if self.pixel_matching:
            data["pixel_matching"] = True
        if self.require_hosted_match:
            data["require_hosted_match"] = True
        if self.max_qps is not None:
            data["max_qps"] = self.max_qps
        return data


@dataclass(frozen=True, slots=True)
class Publisher:
    """A publisher whose pages call ``/ad``; ``pixel_matching = False`` opts its pages out."""

    id: str
    pixel_matching: bool = True


@dataclass(frozen=True, slots=True)
class UserList:
    """A user list a buyer may add browsers to with ``google_ula``."""

    id: int
    owner: str
    closed: bool = False
    membership_days: int = 30

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "owner": self.owner,
            "closed": self.closed,
            "membership_days": self.membership_days,
        }


@dataclass(frozen=True, slots=True)
class ExchangeSettings:
    """Protocol choices and limits of the exchange (docs/protocol.md)."""

    set_cookie_by_default: bool = False
    extras_first: bool = True
    cookie_name: str = "cm_id"
    cookie_domain: str | None = None
    cookie_secure: bool = True
    cookie_max_age_days: int = 390
    hosted_match_ttl_days: int = 90
    push_token_ttl_seconds: int = 3600
    match_expiry_days: int = 14  # a pixel match is not introduced again before this
    auction_timeout_ms: int = 120  # the auction's deadline (OpenRTB tmax)
    trusted_proxies: frozenset[str] = field(default_factory=frozenset)


def buyer_from_dict(data: dict[str, object]) -> Buyer:
    """Rebuild a Buyer from ``Buyer.to_dict`` output (already validated when it was stored)."""
    rate = data.get("hosted_match_writes_per_second")
    bidder_url = data.get("bidder_url")
    push_url = data.get("push_url")
    max_qps = data.get("max_qps")
    return Buyer(
        nid=str(data["nid"]),
        redirect=RedirectTemplate.compile(str(data["redirect_url"])),
        hosted_match=bool(data.get("hosted_match", False)),
        hosted_match_writes_per_second=float(rate) if isinstance(rate, int | float) else None,
        bidder_url=str(bidder_url) if isinstance(bidder_url, str) else None,
        push_url=RedirectTemplate.compile(push_url) if isinstance(push_url, str) else None,
        pixel_matching=bool(data.get("pixel_matching", False)),
        require_hosted_match=bool(data.get("require_hosted_match", False)),
        max_qps=float(max_qps) if isinstance(max_qps, int | float) else None,
    )


def user_list_from_dict(data: dict[str, object]) -> UserList:
    """Rebuild a UserList from ``UserList.to_dict`` output."""
    list_id = data["id"]
    days = data.get("membership_days", 30)
    return UserList(
        id=int(list_id) if isinstance(list_id, int | str) else 0,
        owner=str(data["owner"]),
        closed=bool(data.get("closed", False)),
        membership_days=int(days) if isinstance(days, int | str) else 30,
    )
