"""What the buyer asks the privacy policy, and the signals it asks with.

- :class:`Gate`: one operation for one party. A request that says nothing (``SILENT``, most
  traffic) always gets the same answer from the policy, so the gate asks once and then only
  counts the answer (in the policy's own tally): the no-signal path costs a dict increment,
  not a decision.
- :func:`bid_signals`: the consent signals of an OpenRTB 2.6 bid request (``regs`` and
  ``user.consent``), decoded once (each string's decoder caches per string).
- :func:`bid_privacy_params`: the same signals as the URL parameters a match tag carries
  (``gdpr``, ``gdpr_consent``, ``us_privacy``, ``gpp``, ``gpp_sid``), so that the exchange and
  the buyer's ``/match`` judge the match by the consent the bid was judged by.
- :data:`UNREADABLE`: what a request whose privacy parameters do not parse says: GDPR with a
  TC string that does not decode, which the policy refuses for every operation.
"""

from __future__ import annotations

from cookiematch.errors import QueryError
from cookiematch.privacy.policy import Decision, Operation, PrivacyPolicy, Reason
from cookiematch.privacy.signals import SILENT, ConsentSignals
from cookiematch.protocol.gpp import decode_gpp
from cookiematch.protocol.openrtb import BidRequest
from cookiematch.protocol.privacy import parse_privacy
from cookiematch.protocol.query import QueryParam
from cookiematch.protocol.tcf import decode_tc_string
from cookiematch.protocol.undecodable import Undecodable
from cookiematch.protocol.usprivacy import decode_us_privacy

__all__ = ["UNREADABLE", "Gate", "bid_privacy_params", "bid_signals"]

MAX_GPP_SID = 32
"""At most this many section IDs in ``regs.gpp_sid`` (the bound of the URL parameter); more
is unreadable, which puts every section of the GPP string in force."""

UNREADABLE = ConsentSignals(gdpr=True, tc=Undecodable("malformed privacy parameter"))
"""The signals of a request whose privacy parameters do not parse: no consent."""


class Gate:
    """``decide(signals)``: may ``operation`` happen for the party ``vendor_id``?

    Every answer is counted by the policy (``policy.counts``), the silent ones included: the
    first silent request is decided by the policy, the others reuse that decision and add to
    the same count.
    """

    __slots__ = ("_key", "_operation", "_policy", "_silent", "_vendor_id")

    def __init__(
        self, policy: PrivacyPolicy, operation: Operation, vendor_id: int | None = None
    ) -> None:
        self._policy = policy
        self._operation = operation
        self._vendor_id = vendor_id
        self._silent: Decision | None = None
        self._key: tuple[Operation, Reason] | None = None

    def decide(self, signals: ConsentSignals) -> Decision:
        if signals is SILENT:
            silent, key = self._silent, self._key
            if silent is not None and key is not None:
                self._policy.counts[key] += 1
                return silent
            silent = self._silent = self._policy.decide(self._operation, SILENT, self._vendor_id)
            self._key = (self._operation, silent.reason)
            return silent
        return self._policy.decide(self._operation, signals, self._vendor_id)


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
    tc = decode_tc_string(consent) if consent else None
    if regs is None:
        return ConsentSignals(tc=tc)
    gdpr = None if regs.gdpr is None else regs.gdpr != 0
    gpp_sid = regs.gpp_sid
    us_privacy = regs.us_privacy
    signals = ConsentSignals(
        gdpr=gdpr,
        tc=tc,
        gpp=decode_gpp(regs.gpp) if regs.gpp else None,
        gpp_sid=tuple(gpp_sid) if gpp_sid and len(gpp_sid) <= MAX_GPP_SID else None,
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
