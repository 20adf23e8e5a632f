"""A request's privacy parameters as every role reads them: leniently, once per distinct tuple.

``read_privacy(params, sec_gpc)`` picks ``gdpr``, ``gdpr_consent``, ``us_privacy``, ``gpp`` and
``gpp_sid`` out of a request's parsed query and decodes them with :func:`decode_signals`. It
never raises: a browser-facing route must not fail on a privacy parameter. A parameter that
breaks its grammar (``protocol/privacy.py``), or is given twice, is a signal that does not
decode, read on the safe side:

    gdpr          GDPR applies (the TC string, if any, decides)
    gdpr_consent  an undecodable TC string: no consent
    us_privacy    an undecodable US Privacy string: an opt-out
    gpp           an undecodable GPP string: an opt-out
    gpp_sid       every section of the GPP string in force (as ``decode_signals`` reads it)

The answer is cached per distinct (parameters, ``Sec-GPC``) tuple, so a browser that fires
several tags with the same consent string pays one decode, and the policy's memo (keyed by the
signals object) answers again at the cost of a look-up; a request without any of these
parameters and without ``Sec-GPC: 1`` is :data:`NO_PRIVACY` at the cost of one scan of its
parameter names.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from cookiematch.errors import QueryError
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

__all__ = ["NO_PRIVACY", "RequestPrivacy", "read_privacy"]

CACHE_SIZE = 512
"""Distinct (parameters, Sec-GPC) tuples kept decoded per process (the TC string decoder
keeps as many strings: the two hold the same decoded values)."""

_NAMES = frozenset(PRIVACY_PARAMS)
_MALFORMED = "malformed or repeated request parameter"

Raw = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class RequestPrivacy:
    """One request's privacy parameters: ``params`` those that are well formed, ``signals``
    what all of them say, decoded (what the policy judges), and ``received`` every one as it
    came, malformed and repeated ones included: what a role passes on (a match tag's
    parameters, OpenRTB ``regs``), so that the next one reads the same signals, never fewer."""

    params: PrivacySignals
    signals: ConsentSignals
    received: tuple[QueryParam, ...] = ()

    def received_value(self, name: str) -> str | None:
        """What was received for ``name``: one value as it came, several joined by ``,``
        (which no privacy grammar allows, so the next reader finds it malformed too)."""
        values = [p.value or "" for p in self.received if p.name == name]
        return ",".join(values) if values and any(values) else None


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
        params, signals = _decode_leniently(found, sec_gpc)
    else:
        signals = decode_signals(params, sec_gpc)
    return RequestPrivacy(params, signals, tuple(found))


def _decode_leniently(
    found: list[QueryParam], sec_gpc: str | None
) -> tuple[PrivacySignals, ConsentSignals]:
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
        return params, signals
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
    return params, signals
