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

The hosted match's common case (the same tag with one ``google_hm``, with or without
``google_cm``) is ``CommonMatch.hosted``: the same checks, then those of the general path's
write (a buyer with ``hosted_match``, no write rate, a value that decodes: else the general
path answers its status), decided before anything is done; then the write, awaited until the
store acknowledges it (group commit), the gid and the monitor (with ``google_cm``), and the
Location: the redirect, or on a store failure the same redirect with ``google_hm=4``, each
prepared from the template's rendering too.

A cookie match's counts (the policy's two decisions, asked once per buyer when it is
prepared: the policy is pure; the ``redirect`` outcome, through ``on_matched``) are a plain
int per prepared buyer on the request path, added to the counters by ``fold``: at each of the
monitor's flushes (about once a second) and before a buyer is prepared again. The counters
lag the requests by at most that, and lose nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from cookiematch.errors import HostedMatchError
from cookiematch.exchange.consent import may_store_and_sync, store_and_sync_allowed
from cookiematch.exchange.hosted_write import store_hosted_match
from cookiematch.exchange.model import Buyer
from cookiematch.exchange.monitoring import BuyerMonitor
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.privacy.policy import Operation, PrivacyPolicy, Reason
from cookiematch.privacy.signals import SILENT
from cookiematch.protocol.codes import HostedMatchStatus
from cookiematch.protocol.gid_redirect import GidRedirect
from cookiematch.protocol.hosted import decode_hosted_match
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage.base import Store

__all__ = ["CommonMatch", "HostedAnswer"]

MAX_PREPARED = 4096
"""Buyers kept prepared (a change of a buyer prepares it again; past this, all again)."""
_FAILED = HostedMatchStatus.INTERNAL_ERROR  # the one status a write itself answers
_STORE_ID, _SYNC = Operation.STORE_ID, Operation.SYNC


@dataclass(slots=True)
class _Prepared:
    """One buyer's pieces, valid while the registry holds this ``buyer`` object."""

    buyer: Buyer
    allowed: bool  # the policy allows store_id and sync under SILENT
    decided: tuple[tuple[Operation, Reason], ...]  # what the policy's answers count
    gid: Callable[[bytes], str]
    redirect: GidRedirect | None
    hosted: dict[tuple[bool, bool], GidRedirect] | None  # see _hosted_redirects
    matched: int = 0  # cookie matches answered since the last fold


HostedAnswer = tuple[str, int | None]
"""A hosted match's Location and its ``google_hm`` status (None: stored)."""


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
        store: Store,
        hosted_ttl: int,
    ) -> None:
        """``limited`` says whether a buyer's match tags are under a limit now; ``store``
        takes the hosted match writes, kept ``hosted_ttl`` seconds."""
        self._registry = registry
        self._store = store
        self._hosted_ttl = hosted_ttl
        self._cipher = cipher
        self._policy = policy
        self._extras_first = extras_first
        self.monitor = monitor
        self._limited = limited
        self._prepared: dict[str, _Prepared] = {}
        self.on_matched: Callable[[str, int], None] | None = None
        """Counts ``n`` cookie matches answered for a buyer (at ``fold``)."""
        if monitor is not None:
            monitor.before_flush(self.fold)

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
        location = redirect.location(scheme, prepared.gid(browser_id), extras)
        if location is None:
            return None
        prepared.matched += 1  # the policy's decisions and the outcome, counted at fold
        if self.monitor is not None:  # frequency-capping monitoring, off the hot path
            self.monitor.gid_issued(nid, browser_id)
        return location

    def fold(self) -> None:
        """Count the cookie matches answered since the last fold: the policy's decisions
        and ``on_matched``."""
        for prepared in self._prepared.values():
            if prepared.matched:
                self._fold(prepared)

    def _fold(self, prepared: _Prepared) -> None:
        n, prepared.matched = prepared.matched, 0
        counts = self._policy.counts
        for key in prepared.decided:
            counts[key] += n
        if self.on_matched is not None:
            self.on_matched(prepared.buyer.nid, n)

    def hosted(
        self,
        nid: str,
        browser_id: bytes,
        scheme: str,
        extras: Sequence[str],
        value: str,
        cookie_match: bool,
    ) -> Coroutine[Any, Any, HostedAnswer] | None:
        """The hosted match of ``value`` (``google_hm`` as read) for buyer ``nid`` and
        ``browser_id``, with the cookie match if ``cookie_match``: a coroutine that writes,
        awaits the store's acknowledgement and answers the Location and the status, counted
        and monitored as the general path does; None when this is not the common case
        (nothing done)."""
        buyer = self._registry.buyer(nid)
        if buyer is None or not buyer.hosted_match:
            return None  # not allowed: status 1, the general path's
        if buyer.hosted_match_writes_per_second is not None:
            return None  # throttled by the general path's buckets
        if scheme != "https" and scheme != "http":
            return None
        prepared = self._prepared.get(nid)
        if prepared is None or prepared.buyer is not buyer:
            prepared = self._prepare(buyer)
        if prepared.hosted is None or not prepared.allowed:
            return None
        limited = self._limited
        if limited is not None and limited(buyer):
            return None
        try:
            data = decode_hosted_match(value)
        except HostedMatchError:
            return None  # its status is the general path's
        if not may_store_and_sync(self._policy, SILENT, buyer.gvl_vendor_id):
            return None  # cannot differ from the prepared answer: the policy is pure
        return self._write(prepared, browser_id, scheme, extras, data, cookie_match)

    async def _write(
        self,
        prepared: _Prepared,
        browser_id: bytes,
        scheme: str,
        extras: Sequence[str],
        data: bytes,
        cookie_match: bool,
    ) -> HostedAnswer:
        nid = prepared.buyer.nid
        status = await store_hosted_match(self._store, browser_id, nid, data, self._hosted_ttl)
        assert prepared.hosted is not None  # checked by hosted()
        redirect = prepared.hosted[cookie_match, status is None]
        gid = ""
        if cookie_match:
            gid = prepared.gid(browser_id)
            if self.monitor is not None:  # frequency-capping monitoring, off the hot path
                self.monitor.gid_issued(nid, browser_id)
        location = redirect.location(scheme, gid, extras)
        assert location is not None  # the scheme was checked by hosted()
        return location, status

    def _prepare(self, buyer: Buyer) -> _Prepared:
        cver = self._cipher.version_for(buyer.key_version)
        template, first = buyer.redirect_url, self._extras_first
        policy, vendor = self._policy, buyer.gvl_vendor_id
        allowed = store_and_sync_allowed(policy, SILENT, vendor)
        decided = (
            (
                (_STORE_ID, policy.answer(_STORE_ID, SILENT).reason),
                (_SYNC, policy.answer(_SYNC, SILENT, vendor).reason),
            )
            if allowed
            else ()
        )
        prepared = _Prepared(
            buyer,
            allowed,
            decided,
            self._cipher.gid_function(buyer.nid, cver),
            GidRedirect.prepare(template, cver, extras_first=first),
            _hosted_redirects(template, cver, first) if buyer.hosted_match else None,
        )
        before = self._prepared.get(buyer.nid)
        if before is not None and before.matched:
            self._fold(before)  # counted with the decisions they were answered with
        if len(self._prepared) >= MAX_PREPARED:
            self.fold()
            self._prepared.clear()
        self._prepared[buyer.nid] = prepared
        return prepared


def _hosted_redirects(
    template: RedirectTemplate, cver: int, extras_first: bool
) -> dict[tuple[bool, bool], GidRedirect] | None:
    """A hosted buyer's redirects by (with a cookie match, stored): with a gid or not, with
    ``google_hm=4`` or not; None when one cannot be prepared."""
    found = {
        (cm, stored): GidRedirect.prepare(
            template,
            cver,
            extras_first=extras_first,
            hosted_match=None if stored else _FAILED,
            gid=cm,
        )
        for cm in (True, False)
        for stored in (True, False)
    }
    redirects = {key: redirect for key, redirect in found.items() if redirect is not None}
    return redirects if len(redirects) == len(found) else None
