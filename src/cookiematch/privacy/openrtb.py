"""A request's consent signals in OpenRTB, both ways: 2.6 ``regs`` and ``user.consent`` (and
the 2.5 extensions where 2.6 says nothing), ``regs.coppa``.

bid_regs(privacy)            what the exchange puts in every bid request of an ad request
bid_signals(request)         what a bidder reads from a bid request, decoded
bid_privacy_params(request)  the same signals as the URL parameters a match tag carries,
                             so the exchange and the buyer's ``/match`` judge a match by
                             the consent the bid was judged by
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from cookiematch.errors import QueryError
from cookiematch.privacy.request import RequestPrivacy
from cookiematch.privacy.signals import SILENT, ConsentSignals, child_directed
from cookiematch.protocol.gpp import decode_gpp
from cookiematch.protocol.openrtb import BidRequest, Regs
from cookiematch.protocol.privacy import parse_privacy
from cookiematch.protocol.query import QueryParam
from cookiematch.protocol.tcf import decode_tc_string
from cookiematch.protocol.usprivacy import decode_us_privacy

__all__ = ["CACHE_SIZE", "MAX_GPP_SID", "bid_privacy_params", "bid_regs", "bid_signals"]

CACHE_SIZE = 512
"""Distinct sets of consent fields kept decoded per process."""

MAX_GPP_SID = 32
"""At most this many section IDs in ``regs.gpp_sid`` (the bound of the URL parameter); more
is unreadable, which puts every section of the GPP string in force."""

_NO_REGS = Regs()


def bid_regs(privacy: RequestPrivacy, *, coppa: bool = False) -> tuple[Regs | None, str | None]:
    """OpenRTB 2.6 ``regs`` and ``user.consent`` for every bid request of this ad request: the
    strings as received, malformed ones too (a buyer then reads them as undecodable, as the
    exchange did, never as absent); ``regs.gdpr`` and ``regs.gpp_sid`` as the exchange read
    them (a malformed ``gdpr`` reads as 1); ``coppa = 1`` for a child-directed request; None
    where the request said nothing."""
    params, gdpr = privacy.params, privacy.signals.gdpr
    sections = privacy.signals.gpp_sid
    received = privacy.received_value
    regs = Regs(
        coppa=1 if coppa else None,
        gdpr=None if gdpr is None else int(gdpr),
        us_privacy=params.us_privacy or received("us_privacy"),
        gpp=params.gpp or received("gpp"),
        gpp_sid=list(sections) if sections else None,
    )
    return (None if regs == _NO_REGS else regs), params.gdpr_consent or received("gdpr_consent")


@dataclass(frozen=True, slots=True)
class _Fields:
    """A bid request's consent fields, from OpenRTB 2.6 or, where 2.6 says nothing, from the
    2.5 extensions (``regs.ext.gdpr``, ``regs.ext.us_privacy``, ``regs.ext.gpp``,
    ``regs.ext.gpp_sid``, ``user.ext.consent``), as Prebid Server reads them. A 2.5 field of
    the wrong JSON type is unreadable: ``gdpr`` then applies, a string reads as undecodable."""

    gdpr: int | None
    consent: str | None
    us_privacy: str | None
    gpp: str | None
    gpp_sid: list[int] | None
    coppa: bool

    @property
    def none(self) -> bool:
        return self == _NO_FIELDS


_NO_FIELDS = _Fields(None, None, None, None, None, False)
_UNREADABLE = "\x00"
"""What a 2.5 string field of another JSON type reads as: a string no decoder accepts."""


def _ext_int(ext: dict[str, Any], name: str) -> int | None:
    value = ext.get(name)
    if value is None:
        return None
    return value if type(value) is int else 1  # an unreadable gdpr is never a waiver


def _ext_str(ext: dict[str, Any] | None, name: str) -> str | None:
    value = None if ext is None else ext.get(name)
    if value is None:
        return None
    return value if isinstance(value, str) else _UNREADABLE


def _ext_sections(ext: dict[str, Any]) -> list[int] | None:
    value = ext.get("gpp_sid")
    if isinstance(value, list) and all(type(v) is int for v in value):
        return value
    return None


def _fields(request: BidRequest) -> _Fields:
    regs, user = request.regs, request.user
    consent = user.consent if user is not None else None
    if regs is None and not consent and (user is None or not user.ext):
        return _NO_FIELDS
    if not consent and user is not None:
        consent = _ext_str(user.ext, "consent")
    if regs is None:
        return _Fields(None, consent or None, None, None, None, False)
    gdpr, us_privacy, gpp, gpp_sid = regs.gdpr, regs.us_privacy, regs.gpp, regs.gpp_sid
    ext = regs.ext
    if ext:
        gdpr = _ext_int(ext, "gdpr") if gdpr is None else gdpr
        us_privacy = us_privacy or _ext_str(ext, "us_privacy")
        if not gpp:
            gpp = _ext_str(ext, "gpp")
            gpp_sid = gpp_sid or _ext_sections(ext)
    return _Fields(gdpr, consent or None, us_privacy, gpp, gpp_sid, regs.coppa == 1)


def bid_signals(request: BidRequest) -> ConsentSignals:
    """The consent signals of a bid request; ``SILENT`` when it carries none. Never raises.

    ``regs.gdpr``: 0 is "GDPR does not apply", any other value "applies" (a value we cannot
    read is never a waiver). ``us_privacy`` is read upper-cased, as the URL parameter is.
    Empty strings and an empty ``gpp_sid`` count as absent; a ``gpp_sid`` of more than
    ``MAX_GPP_SID`` IDs is unreadable (every section of the GPP string in force).
    ``regs.coppa = 1`` marks the request child-directed.
    """
    fields = _fields(request)
    if fields.none:
        return SILENT
    gpp_sid = fields.gpp_sid
    sections = tuple(gpp_sid) if gpp_sid and len(gpp_sid) <= MAX_GPP_SID else None
    signals = _signals(fields.gdpr, fields.us_privacy, fields.gpp, sections, fields.consent)
    return child_directed(signals) if fields.coppa else signals


@functools.lru_cache(maxsize=CACHE_SIZE)
def _signals(
    gdpr: int | None,
    us_privacy: str | None,
    gpp: str | None,
    gpp_sid: tuple[int, ...] | None,
    consent: str | None,
) -> ConsentSignals:
    """Decoded once per distinct set of fields: the same object for the same signals, which the
    policy's memo recognises."""
    signals = ConsentSignals(
        gdpr=None if gdpr is None else gdpr != 0,
        tc=decode_tc_string(consent) if consent else None,
        gpp=decode_gpp(gpp) if gpp else None,
        gpp_sid=gpp_sid,
        us_privacy=decode_us_privacy(us_privacy.upper()) if us_privacy else None,
    )
    return SILENT if signals == SILENT else signals


def bid_privacy_params(request: BidRequest) -> tuple[QueryParam, ...] | None:
    """The bid request's signals as URL parameters (empty when it has none), or None when
    they cannot travel in a URL (a value outside the grammar of ``protocol.privacy``, or a
    child-directed request, which no match tag may follow)."""
    fields = _fields(request)
    if fields.none:
        return ()
    if fields.coppa:
        return None
    params: list[QueryParam] = []
    if fields.gdpr is not None:
        params.append(QueryParam("gdpr", "0" if fields.gdpr == 0 else "1"))
    if fields.consent:
        params.append(QueryParam("gdpr_consent", fields.consent))
    if fields.us_privacy:
        params.append(QueryParam("us_privacy", fields.us_privacy.upper()))
    if fields.gpp:
        params.append(QueryParam("gpp", fields.gpp))
    if fields.gpp_sid:
        params.append(QueryParam("gpp_sid", ",".join(str(s) for s in fields.gpp_sid)))
    try:
        return parse_privacy(params).params()
    except QueryError:
        return None
