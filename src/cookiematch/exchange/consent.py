"""A request's privacy signals as the exchange reads them, and its questions to the policy.

``read_privacy(params, sec_gpc)`` picks ``gdpr``, ``gdpr_consent``, ``us_privacy``, ``gpp`` and
``gpp_sid`` out of a request's parsed query (``/pixel``, ``/ad``) and decodes them once with
:func:`~cookiematch.privacy.decode_signals`. It never raises: a browser-facing route must not
fail on a privacy parameter it did not fail on before these were read. A parameter that breaks
its grammar (``protocol/privacy.py``), or is given twice, is a signal that does not decode,
read on the safe side:

    gdpr          GDPR applies (the TC string, if any, decides)
    gdpr_consent  an undecodable TC string: no consent
    us_privacy    an undecodable US Privacy string: an opt-out
    gpp           an undecodable GPP string: an opt-out
    gpp_sid       every section of the GPP string in force (as ``decode_signals`` reads it)

The answer is cached per distinct (parameters, ``Sec-GPC``) tuple, so a browser that fires
several match tags with the same consent string pays one decode; a request without any of
these parameters and without ``Sec-GPC: 1`` is :data:`NO_PRIVACY` at the cost of one scan of
its parameter names.

``PrivacyGate`` is the exchange's way of asking the policy: ``decide`` answers what
``PrivacyPolicy.decide`` answers, from a memo of the answers given for the same signals
object, operation and vendor (decisions are a pure function of these and the settings; the
signals objects come from the cache above), and counts every answer, memo or not, in the
policy's ``counts``; ``store_and_sync`` asks the match tag's two questions in one look-up.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cookiematch.errors import QueryError
from cookiematch.privacy.policy import Decision, Operation, PrivacyPolicy, Reason
from cookiematch.privacy.signals import SILENT, ConsentSignals, decode_signals
from cookiematch.protocol.gpc import gpc_opt_out
from cookiematch.protocol.privacy import (
    NO_SIGNALS,
    PRIVACY_PARAMS,
    PrivacySignals,
    parse_privacy,
)
from cookiematch.protocol.query import QueryParam
from cookiematch.protocol.undecodable import Undecodable

__all__ = [
    "NO_PRIVACY",
    "PrivacyGate",
    "RequestPrivacy",
    "read_privacy",
    "truncate_ip",
]

CACHE_SIZE = 512
"""Distinct (parameters, Sec-GPC) tuples kept decoded per process (the TC string decoder
keeps as many strings: the two hold the same decoded values)."""

MEMO_SIZE = 512
"""Entries a ``PrivacyGate`` memo keeps before it starts again from empty. An entry holds its
signals object (so that its ``id`` is not reused): a hostile stream of distinct large TC
strings keeps at most this many alive per memo."""

_NAMES = frozenset(PRIVACY_PARAMS)
_MALFORMED = "malformed or repeated request parameter"

Raw = tuple[tuple[str, str | None], ...]
Answer = tuple[Operation, Reason]
Pair = tuple[ConsentSignals, bool, Answer, Answer | None]  # signals, allowed, the answers


@dataclass(frozen=True, slots=True)
class RequestPrivacy:
    """One request's privacy parameters: ``params`` those that are well formed, as received
    (what the exchange passes on in OpenRTB ``regs`` and ``user.consent``), and ``signals``
    what all of them say, decoded (what the policy judges)."""

    params: PrivacySignals
    signals: ConsentSignals


NO_PRIVACY = RequestPrivacy(NO_SIGNALS, SILENT)
"""A request that says nothing about privacy: most traffic."""


def read_privacy(params: Iterable[QueryParam], sec_gpc: str | None) -> RequestPrivacy:
    """The privacy parameters among ``params`` and the ``Sec-GPC`` header; never raises."""
    raw = [(p.name, p.value) for p in params if p.name in _NAMES]
    gpc = sec_gpc is not None and gpc_opt_out(sec_gpc)
    if not raw and not gpc:
        return NO_PRIVACY
    return _decode(tuple(raw), gpc)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _decode(raw: Raw, gpc: bool) -> RequestPrivacy:
    sec_gpc = "1" if gpc else None
    found = [QueryParam(name, value) for name, value in raw]
    try:
        params = parse_privacy(found)
    except QueryError:
        return _decode_leniently(found, sec_gpc)
    return RequestPrivacy(params, decode_signals(params, sec_gpc))


def _decode_leniently(found: list[QueryParam], sec_gpc: str | None) -> RequestPrivacy:
    """Each parameter on its own: the well-formed ones decoded, the others undecodable."""
    counts: dict[str, int] = {}
    for param in found:
        counts[param.name] = counts.get(param.name, 0) + 1
    good: list[QueryParam] = []
    bad: set[str] = set()
    for param in found:
        if counts[param.name] > 1:
            bad.add(param.name)
            continue
        try:
            parse_privacy((param,))
        except QueryError:
            bad.add(param.name)
        else:
            good.append(param)
    params = parse_privacy(good)
    signals = decode_signals(params, sec_gpc)
    if bad <= {"gpp_sid"}:  # left out, it reads as an undecodable gpp_sid: every section
        return RequestPrivacy(params, signals)
    signals = ConsentSignals(
        gdpr=True if "gdpr" in bad else signals.gdpr,
        tc=Undecodable(f"gdpr_consent: {_MALFORMED}") if "gdpr_consent" in bad else signals.tc,
        gpp=Undecodable(f"gpp: {_MALFORMED}") if "gpp" in bad else signals.gpp,
        gpp_sid=signals.gpp_sid,
        us_privacy=(
            Undecodable(f"us_privacy: {_MALFORMED}") if "us_privacy" in bad else signals.us_privacy
        ),
        gpc=signals.gpc,
    )
    return RequestPrivacy(params, signals)


class PrivacyGate:
    """The exchange's questions to the one ``PrivacyPolicy`` of the process, memoised."""

    def __init__(self, policy: PrivacyPolicy) -> None:
        self.policy = policy
        self._counts = policy.counts
        self._memo: dict[tuple[int, Operation, int | None], tuple[ConsentSignals, Decision]] = {}
        self._pairs: dict[tuple[int, int | None], Pair] = {}

    def decide(
        self, operation: Operation, signals: ConsentSignals, vendor_id: int | None = None
    ) -> Decision:
        """``PrivacyPolicy.decide``'s answer, counted in the policy's ``counts``."""
        key = (id(signals), operation, vendor_id)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is signals:  # the memo holds it: its id is not reused
            decision = hit[1]
            self._counts[operation, decision.reason] += 1
            return decision
        decision = self.policy.decide(operation, signals, vendor_id)  # counts it
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = (signals, decision)
        return decision

    def store_and_sync(self, signals: ConsentSignals, vendor_id: int | None) -> bool:
        """``store_id``, then (when that allows it) ``sync`` for ``vendor_id``: whether both
        allow; every answer counted. A match tag asks this once: one memo look-up."""
        hit = self._pairs.get((id(signals), vendor_id))
        if hit is not None and hit[0] is signals:
            counts = self._counts
            counts[hit[2]] += 1
            if hit[3] is not None:
                counts[hit[3]] += 1
            return hit[1]
        store = self.decide(Operation.STORE_ID, signals)
        sync = self.decide(Operation.SYNC, signals, vendor_id) if store.allowed else None
        if len(self._pairs) >= MEMO_SIZE:
            self._pairs.clear()
        self._pairs[id(signals), vendor_id] = (
            signals,
            store.allowed and sync is not None and sync.allowed,
            (Operation.STORE_ID, store.reason),
            None if sync is None else (Operation.SYNC, sync.reason),
        )
        return store.allowed and sync is not None and sync.allowed


def truncate_ip(ip: str | None) -> str | None:
    """An address with its host part zeroed: IPv4 to its /24, IPv6 to its /48 (an IPv4 address
    mapped into IPv6 as IPv4); None for anything that is not an IP address."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return str(network.network_address)
