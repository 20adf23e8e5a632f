"""Global Privacy Control: the ``Sec-GPC`` request header (W3C GPC specification).

A browser whose user asks not to have their personal data sold or shared sends
``Sec-GPC: 1``; the spec's grammar has no other value and a browser without the preference
sends no header. So ``"1"`` is an opt-out of sale and sharing, and anything else, the
header's absence included, is no signal at all (neither an opt-out nor a consent). The value
is compared without the spaces and tabs HTTP allows around a field value.
"""

from __future__ import annotations

GPC_HEADER = "sec-gpc"


def gpc_opt_out(header: str | None) -> bool:
    """True when the ``Sec-GPC`` value (None when absent) opts out of sale and sharing."""
    return header is not None and header.strip(" \t") == "1"
