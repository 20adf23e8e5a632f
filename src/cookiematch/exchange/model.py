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

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "nid": self.nid,
            "redirect_url": self.redirect.url,
            "hosted_match": self.hosted_match,
        }
        if self.hosted_match_writes_per_second is not None:
            data["hosted_match_writes_per_second"] = self.hosted_match_writes_per_second
        return data


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
    trusted_proxies: frozenset[str] = field(default_factory=frozenset)


def buyer_from_dict(data: dict[str, object]) -> Buyer:
    """Rebuild a Buyer from ``Buyer.to_dict`` output (already validated when it was stored)."""
    rate = data.get("hosted_match_writes_per_second")
    return Buyer(
        nid=str(data["nid"]),
        redirect=RedirectTemplate.compile(str(data["redirect_url"])),
        hosted_match=bool(data.get("hosted_match", False)),
        hosted_match_writes_per_second=float(rate) if isinstance(rate, int | float) else None,
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
