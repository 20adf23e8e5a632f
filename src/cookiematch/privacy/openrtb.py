"""A request's consent signals in OpenRTB 2.6, both ways: ``regs`` and ``user.consent``.

bid_regs(privacy)            what the exchange puts in every bid request of an ad request
bid_signals(request)         what a bidder reads from a bid request, decoded
bid_privacy_params(request)  the same signals as the URL parameters a match tag carries,
                             so the exchange and the buyer's ``/match`` judge a match by
                             the consent the bid was judged by
"""

from __future__ import annotations

import functools

from cookiematch.errors import QueryError
from cookiematch.privacy.request import RequestPrivacy
from cookiematch.privacy.signals import SILENT, ConsentSignals
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


def bid_regs(privacy: RequestPrivacy) -> tuple[Regs | None, str | None]:
    """OpenRTB 2.6 ``regs`` and ``user.consent`` for every bid request of this ad request: the
    strings as received, malformed ones too (a buyer then reads them as undecodable, as the
    exchange did, never as absent); ``regs.gdpr`` and ``regs.gpp_sid`` as the exchange read
    them (a malformed ``gdpr`` reads as 1); None where the request said nothing."""
    params, gdpr = privacy.params, privacy.signals.gdpr
    sections = privacy.signals.gpp_sid
    received = privacy.received_value
    regs = Regs(
        gdpr=None if gdpr is None else int(gdpr),
        us_privacy=params.us_privacy or received("us_privacy"),
        gpp=params.gpp or received("gpp"),
        gpp_sid=list(sections) if sections else None,
    )
    return (None if regs == _NO_REGS else regs), params.gdpr_consent or received("gdpr_consent")


def bid_signals(request: BidRequest) -> ConsentSignals:
    """The consent signals of a bid request; ``SILENT`` when it carries none. Never raises.

    ``regs.gdpr``: 0 is "GDPR does not apply", any other value "applies" (a value we cannot
    read is never a waiver). ``us_privacy`` is read upper-cased, as the URL parameter is.
    Empty strings and an empty ``gpp_sid`` count as absent; a ``gpp_sid`` of more than
    ``MAX_GPP_SID`` IDs is unreadable (every section of the GPP string in force).
    """
    regs = request.regs
    user = request.user
    consent = user.consent if user is not None else None
    if regs is None and not consent:
        return SILENT
    if regs is None:
        return _signals(None, None, None, None, consent)
    gpp_sid = regs.gpp_sid
    sections = tuple(gpp_sid) if gpp_sid and len(gpp_sid) <= MAX_GPP_SID else None
    return _signals(regs.gdpr, regs.us_privacy, regs.gpp, sections, consent)


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
    they cannot travel in a URL (a value outside the grammar of ``protocol.privacy``)."""
    regs = request.regs
    user = request.user
    consent = user.consent if user is not None else None
    if regs is None and not consent:
        return ()
    params: list[QueryParam] = []
    if regs is not None and regs.gdpr is not None:
        params.append(QueryParam("gdpr", "0" if regs.gdpr == 0 else "1"))
    if consent:
        params.append(QueryParam("gdpr_consent", consent))
    if regs is not None:
        if regs.us_privacy:
            params.append(QueryParam("us_privacy", regs.us_privacy.upper()))
        if regs.gpp:
            params.append(QueryParam("gpp", regs.gpp))
        if regs.gpp_sid:
            params.append(QueryParam("gpp_sid", ",".join(str(s) for s in regs.gpp_sid)))
    try:
        return parse_privacy(params).params()
    except QueryError:
        return None
