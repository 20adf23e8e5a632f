"""The cookie match's common case, decided without the general path's values.

A match tag for a known buyer, from a browser with a valid exchange cookie, that asks for
``google_cm`` and nothing else and says nothing about privacy (``protocol/common_tag.py``)
ends, on the general path (``CookieMatchService.match``), in the redirect with a gid: the
policy asked ``store_id`` and ``sync`` under ``SILENT``, the buyer admitted, the gid issued to
the monitor. ``CommonMatch.location`` takes the same steps in the same order with the
buyer's prepared pieces (its gid function and its ``GidRedirect``) and answers the Location,
or None *before doing anything* when the request is not that case after all: then the
general path answers it, and nothing was counted twice. Not the common case:

- a buyer the policy refuses under ``SILENT`` (``gdpr_default``, no vendor ID...),
- a buyer whose match tags are under a limit now (its allowance is the general path's),
- a redirect URL the prepared pieces cannot render (``GidRedirect.prepare``),
- a scheme that is neither http nor https.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cookiematch.exchange.consent import may_store_and_sync, store_and_sync_allowed
from cookiematch.exchange.model import Buyer
from cookiematch.exchange.monitoring import BuyerMonitor
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.privacy.signals import SILENT
from cookiematch.protocol.gid_redirect import GidRedirect
from cookiematch.protocol.userid import UserIdCipher

__all__ = ["CommonMatch"]

MAX_PREPARED = 4096
"""Buyers kept prepared (a change of a buyer prepares it again; past this, all again)."""


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One buyer's pieces, valid while the registry holds this ``buyer`` object."""

    buyer: Buyer
    allowed: bool  # the policy allows store_id and sync under SILENT
    gid: Callable[[bytes], str]
    redirect: GidRedirect | None


class CommonMatch:
    """The common case of the match tag for one exchange (built by ``CookieMatchService``
    from its own parts, so that both paths share the policy, the cipher and the monitor)."""

    def __init__(
        self,
        *,
        registry: ExchangeRegistry,
        cipher: UserIdCipher,
        policy: PrivacyPolicy,
        extras_first: bool,
        monitor: BuyerMonitor | None,
        limited: Callable[[Buyer], bool] | None,
    ) -> None:
        """``limited`` says whether a buyer's match tags are under a limit now."""
        self._registry = registry
        self._cipher = cipher
        self._policy = policy
        self._extras_first = extras_first
        self.monitor = monitor
        self._limited = limited
        self._prepared: dict[str, _Prepared] = {}

    def location(
        self, nid: str, browser_id: bytes, scheme: str, extras: Sequence[str]
    ) -> str | None:
        """The redirect to buyer ``nid`` with the gid of ``browser_id`` (16 bytes) and the
        encoded ``extras``, counted and monitored as the general path does; None when this
        is not the common case (nothing done)."""
        buyer = self._registry.buyer(nid)
        if buyer is None:
            return None
        prepared = self._prepared.get(nid)
        if prepared is None or prepared.buyer is not buyer:
            prepared = self._prepare(buyer)
        redirect = prepared.redirect
        if redirect is None or not prepared.allowed:
            return None
        limited = self._limited
        if limited is not None and limited(buyer):
            return None
        gid = prepared.gid(browser_id)
        location = redirect.location(scheme, gid, extras)
        if location is None:
            return None
        if not may_store_and_sync(self._policy, SILENT, buyer.gvl_vendor_id):
            return None  # cannot differ from the prepared answer: the policy is pure
        if self.monitor is not None:  # frequency-capping monitoring, off the hot path
            self.monitor.gid_issued(nid, browser_id)
        return location

    def _prepare(self, buyer: Buyer) -> _Prepared:
        cver = self._cipher.version_for(buyer.key_version)
        prepared = _Prepared(
            buyer,
            store_and_sync_allowed(self._policy, SILENT, buyer.gvl_vendor_id),
            self._cipher.gid_function(buyer.nid, cver),
            GidRedirect.prepare(buyer.redirect_url, cver, extras_first=self._extras_first),
        )
        if len(self._prepared) >= MAX_PREPARED:
            self._prepared.clear()
        self._prepared[buyer.nid] = prepared
        return prepared
