"""A request's consent signals, decoded once: TCF v2.2, GPP, US Privacy and Global Privacy Control.

The request parameters (``gdpr``, ``gdpr_consent``, ``gpp``, ``gpp_sid``, ``us_privacy``) come
parsed by :mod:`cookiematch.protocol.privacy`; ``Sec-GPC`` is a header. Each string is decoded
by its decoder (cached per distinct string), so a request pays a look-up, not a decode, for a
string seen before. A string that does not decode stays an ``Undecodable`` here: the policy
reads it as no consent.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass

from cookiematch.protocol.gpc import gpc_opt_out
from cookiematch.protocol.gpp import TCF_EU_V2, GppString, decode_gpp, parse_gpp_sid
from cookiematch.protocol.privacy import NO_SIGNALS as NO_PARAMS
from cookiematch.protocol.privacy import PrivacySignals
from cookiematch.protocol.tcf import TCString, decode_tc_string
from cookiematch.protocol.undecodable import Undecodable
from cookiematch.protocol.usprivacy import UsPrivacy, decode_us_privacy

__all__ = ["SILENT", "ConsentSignals", "child_directed", "decode_signals", "in_force_sections"]


@dataclass(frozen=True, slots=True)
class ConsentSignals:
    """What one request says about consent; ``None`` where it says nothing.

    ``gdpr`` is the ``gdpr`` parameter (True for "1", False for "0"); ``tc`` the TC string of
    ``gdpr_consent``; ``gpp_sid`` the sections the request puts in force (an undecodable
    ``gpp_sid`` puts every section of the GPP string in force: the reading that honours the
    most opt-outs). ``coppa`` is set where the request is child-directed (OpenRTB
    ``regs.coppa = 1``, or a publisher the exchange knows as such).
    """

    gdpr: bool | None = None
    tc: TCString | Undecodable | None = None
    gpp: GppString | Undecodable | None = None
    gpp_sid: tuple[int, ...] | None = None
    us_privacy: UsPrivacy | Undecodable | None = None
    gpc: bool = False
    coppa: bool = False

    @property
    def tc_string(self) -> TCString | Undecodable | None:
        """The TC string in force: ``gdpr_consent``, else the GPP's section 2 when in force
        (decoded once per process: the decoder's cache)."""
        if self.tc is not None:
            return self.tc
        gpp = self.gpp
        if not isinstance(gpp, GppString) or gpp.tcf_eu_v2 is None:
            return None
        in_force = TCF_EU_V2 in in_force_sections(gpp, self.gpp_sid)
        return decode_tc_string(gpp.tcf_eu_v2) if in_force else None

    @property
    def empty(self) -> bool:
        """No signal at all: the request is judged by the policy's defaults alone."""
        return self == SILENT


def in_force_sections(gpp: GppString, gpp_sid: tuple[int, ...] | None) -> Iterable[int]:
    """The GPP section IDs in force: those of ``gpp_sid``, or every section without one."""
    return gpp.section_ids if gpp_sid is None else gpp_sid


SILENT = ConsentSignals()
"""A request that says nothing about consent (most traffic): judged by the defaults alone."""


CACHE_SIZE = 512
"""Distinct (parameters, GPC) pairs kept decoded per process: the same pair gives the same
``ConsentSignals`` object, which the policy's memo recognises."""


def decode_signals(params: PrivacySignals, sec_gpc: str | None = None) -> ConsentSignals:
    """The signals of one request; never raises."""
    gpc = gpc_opt_out(sec_gpc)
    if params == NO_PARAMS and not gpc:
        return SILENT
    return _decode(params, gpc)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _decode(params: PrivacySignals, gpc: bool) -> ConsentSignals:
    gpp_sid: tuple[int, ...] | None = None
    if params.gpp_sid:
        parsed = parse_gpp_sid(params.gpp_sid)
        gpp_sid = None if isinstance(parsed, Undecodable) else parsed
    return ConsentSignals(
        gdpr=None if not params.gdpr else params.gdpr == "1",
        tc=decode_tc_string(params.gdpr_consent) if params.gdpr_consent else None,
        gpp=decode_gpp(params.gpp) if params.gpp else None,
        gpp_sid=gpp_sid,
        us_privacy=decode_us_privacy(params.us_privacy) if params.us_privacy else None,
        gpc=gpc,
    )


@functools.lru_cache(maxsize=512)
def child_directed(signals: ConsentSignals) -> ConsentSignals:
    """``signals`` with ``coppa`` set: one object per distinct signals (the policy's memo)."""
    return signals if signals.coppa else dataclasses.replace(signals, coppa=True)
