"""Which buyers the edge answers, and the pieces it answers them with.

The edge answers a buyer's match tags only when nothing about the buyer can make the flat path
(``exchange/common_match.py``) step aside: the policy allows ``store_id`` and ``sync`` for it
under no signal, its redirect splits around the gid (``GidRedirect.prepare``), and its match
tags are under no rate now nor can be put under one by enforcement (``throttle`` among its
rules' actions). Every other buyer is left to the server: nginx proxies its match tags. The
pieces are computed by the same code as the Python path's (``UserIdCipher.derive_key``,
``GidRedirect.pieces``), so the edge joins the same bytes; only derived per-buyer keys leave
this module, never a master secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cookiematch.exchange.consent import store_and_sync_allowed
from cookiematch.exchange.model import Buyer, Enforcement
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.privacy.signals import SILENT
from cookiematch.protocol.gid_redirect import GidRedirect
from cookiematch.protocol.userid import UserIdCipher

__all__ = ["EdgeBuyer", "Pieces", "edge_buyers"]

Pieces = tuple[list[str], list[str], list[str]]
"""A redirect split at the gid: without extras, and the parts before and after the extras."""


@dataclass(frozen=True, slots=True)
class EdgeBuyer:
    """One buyer as the edge answers it, with its gids of key version ``cver``."""

    nid: str
    cver: int
    enc_key: bytes
    mac_key: bytes
    http: Pieces
    https: Pieces

    def __repr__(self) -> str:  # never show the keys
        return f"EdgeBuyer(nid={self.nid!r})"


def edge_buyers(
    buyers: Iterable[Buyer],
    *,
    cipher: UserIdCipher,
    policy: PrivacyPolicy,
    extras_first: bool,
    enforcement: Enforcement,
) -> tuple[list[EdgeBuyer], dict[str, str]]:
    """The ``buyers`` the edge answers, and for each other one why not (``enforcement``: the
    exchange's rules, for a buyer without its own)."""
    answered: list[EdgeBuyer] = []
    left: dict[str, str] = {}
    for buyer in buyers:
        cver = cipher.version_for(buyer.key_version)
        reason = _left_to_server(buyer, enforcement, policy)
        redirect = GidRedirect.prepare(buyer.redirect_url, cver, extras_first=extras_first)
        if reason is None and redirect is None:
            reason = "its redirect URL is rendered by the general path"
        if reason is not None or redirect is None:
            left[buyer.nid] = reason or ""
            continue
        answered.append(
            EdgeBuyer(
                buyer.nid,
                cver,
                cipher.derive_key(cver, "enc", buyer.nid),
                cipher.derive_key(cver, "mac", buyer.nid),
                redirect.pieces("http"),
                redirect.pieces("https"),
            )
        )
    return answered, left


def _left_to_server(buyer: Buyer, enforcement: Enforcement, policy: PrivacyPolicy) -> str | None:
    if not store_and_sync_allowed(policy, SILENT, buyer.gvl_vendor_id):
        return "the privacy policy does not allow store_id and sync without a signal"
    if buyer.max_match_tags_per_second is not None:
        return "its match tags are under a rate (max_match_tags_per_second)"
    rules = buyer.enforcement if buyer.enforcement is not None else enforcement
    if "throttle" in (*rules.on_frequency_cap_violations, *rules.on_low_response_rate):
        return "enforcement may throttle its match tags"
    return None
