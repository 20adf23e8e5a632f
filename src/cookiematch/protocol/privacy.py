"""IAB privacy signals carried by a sync request: parsed, validated, canonical.

The five parameters are those of prebid's ``/cookie_sync`` and of the IAB URL macros:

    gdpr          "0" or "1" (TCF: does GDPR apply); absent = unknown
    gdpr_consent  a TCF consent string (base64url characters and '.')
    us_privacy    a CCPA string: version "1" then three of Y, N, '-' (e.g. "1YNN")
    gpp           a GPP string (base64url characters, '.' and '~')
    gpp_sid       the applicable GPP section IDs, comma separated (e.g. "2,6")

A valueless or empty parameter counts as absent; anything else that does not fit its grammar,
or a parameter given twice, raises :class:`~cookiematch.errors.QueryError`. Nothing is
decoded beyond that (the TCF vendor bits are not read here).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cookiematch.errors import QueryError
from cookiematch.protocol.query import QueryParam

PRIVACY_PARAMS = ("gdpr", "gdpr_consent", "us_privacy", "gpp", "gpp_sid")
MAX_CONSENT_LENGTH = 2048
MAX_GPP_LENGTH = 4096

_GRAMMAR: dict[str, re.Pattern[str]] = {
    "gdpr": re.compile(r"[01]"),
    "gdpr_consent": re.compile(rf"[A-Za-z0-9_.-]{{1,{MAX_CONSENT_LENGTH}}}"),
    "us_privacy": re.compile(r"1[YNyn-]{3}"),
    "gpp": re.compile(rf"[A-Za-z0-9_.~-]{{1,{MAX_GPP_LENGTH}}}"),
    "gpp_sid": re.compile(r"-?[0-9]{1,4}(?:,-?[0-9]{1,4}){0,31}"),
}


@dataclass(frozen=True, slots=True)
class PrivacySignals:
    """The privacy parameters of one request; ``""`` where absent."""

    gdpr: str = ""
    gdpr_consent: str = ""
    us_privacy: str = ""
    gpp: str = ""
    gpp_sid: str = ""

    @property
    def gdpr_applies(self) -> bool:
        return self.gdpr == "1"

    @property
    def sale_opted_out(self) -> bool:
        """CCPA: the user opted out of the sale of personal information (``1-Y-``)."""
        return len(self.us_privacy) == 4 and self.us_privacy[2] == "Y"

    def params(self) -> tuple[QueryParam, ...]:
        """The non-empty signals as query parameters, in the canonical order."""
        return tuple(
            QueryParam(name, value)
            for name in PRIVACY_PARAMS
            if (value := getattr(self, name)) != ""
        )


NO_SIGNALS = PrivacySignals()


def parse_privacy(params: Iterable[QueryParam]) -> PrivacySignals:
    """The privacy signals among ``params`` (other names are ignored); raises QueryError."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    for param in params:
        name = param.name
        if name not in _GRAMMAR:
            continue
        if name in seen:
            raise QueryError(f"{name} is given more than once")
        seen.add(name)
        value = param.value or ""
        if value == "":
            continue
        if _GRAMMAR[name].fullmatch(value) is None:
            raise QueryError(f"{name} is malformed")
        found[name] = value.upper() if name == "us_privacy" else value
    return PrivacySignals(**found) if found else NO_SIGNALS
