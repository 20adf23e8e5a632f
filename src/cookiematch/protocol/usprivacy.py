"""IAB US Privacy strings (CCPA), version 1: ``1`` then three of ``Y``, ``N``, ``-``.

    position 1  specification version: "1"
    position 2  notice and opportunity to opt out given
    position 3  the user opted out of the sale of personal information
    position 4  the transaction is covered by the IAB's LSPA

``Y`` = yes, ``N`` = no, ``-`` = not applicable or unknown. The spec writes the letters in
upper case and so do the IAB's encoders: lower case does not decode here (the ``us_privacy``
URL parameter is upper-cased by :mod:`cookiematch.protocol.privacy` before it gets here).
``1---`` says the CCPA does not apply; otherwise the opt-out may not be ``-`` (spec: "If CCPA
applies, only Y (yes) or N (no) can be used"), and a string that breaks that does not decode.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

from cookiematch.protocol.undecodable import Undecodable

_FLAGS: dict[str, bool | None] = {"Y": True, "N": False, "-": None}


@dataclass(frozen=True, slots=True)
class UsPrivacy:
    """A decoded US Privacy string; each flag is True (Y), False (N) or None (-)."""

    notice: bool | None
    opt_out_sale: bool | None
    lspa_covered: bool | None

    version: ClassVar[int] = 1

    @property
    def applies(self) -> bool:
        """The CCPA applies (anything but ``1---``)."""
        return not (self.notice is None and self.opt_out_sale is None and self.lspa_covered is None)

    @property
    def sale_opted_out(self) -> bool:
        return self.opt_out_sale is True


def _every_string() -> dict[str, UsPrivacy]:
    """All the strings that decode (at most 27), each decoded once."""
    decoded = {}
    for chars in itertools.product(_FLAGS, repeat=3):
        value = UsPrivacy(*(_FLAGS[char] for char in chars))
        if value.opt_out_sale is not None or not value.applies:
            decoded["1" + "".join(chars)] = value
    return decoded


_DECODED = _every_string()
_MALFORMED = Undecodable("not '1' and three of Y, N, '-' (upper case)")
_OPT_OUT_UNKNOWN = Undecodable("the opt-out of sale is '-' while the CCPA applies")


def decode_us_privacy(text: str) -> UsPrivacy | Undecodable:
    """The US Privacy string ``text``, or why it is not one. Never raises."""
    decoded = _DECODED.get(text)
    if decoded is not None:
        return decoded
    if len(text) == 4 and text[0] == "1" and all(char in _FLAGS for char in text[1:]):
        return _OPT_OUT_UNKNOWN
    return _MALFORMED
