"""The bits of one TC string segment, read left to right.

A TC string segment is one bit string (fields big-endian, first bit first) written in
base64url without padding: six bits a character, the last character filled up with bits the
decoder must not read as data. :class:`BitReader` reads its fields in order and raises
:class:`Malformed` for anything that does not read: a character outside the alphabet, a field
that runs past the end, a letter outside ``A``-``Z``, a non-zero bit after the last field.
"""

from __future__ import annotations

import base64
import re

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_LETTERS = 26  # a TCF letter is 6 bits, A=0 ... Z=25


class Malformed(ValueError):
    """A TC string that does not decode; the message says why.

    Internal to the TCF decoder: ``decode_tc_string`` turns it into an ``Undecodable`` value.
    """


class BitReader:
    """Reads the fields of one base64url segment in order; ``name`` appears in the reasons."""

    __slots__ = ("_bits", "_end", "_pos", "name")

    def __init__(self, segment: str, name: str) -> None:
        if _BASE64URL.fullmatch(segment) is None:
            raise Malformed(f"{name} is empty or not base64url")
        filler = -len(segment) % 4  # whole bytes for the decoder; the filler bits are dropped
        data = base64.urlsafe_b64decode(segment + "A" * filler)
        self._bits = int.from_bytes(data, "big") >> (6 * filler)
        self._end = 6 * len(segment)
        self._pos = 0
        self.name = name

    def read(self, width: int, field: str, section: str = "") -> int:
        """The next ``width`` bits as an unsigned integer (0 for width 0)."""
        pos = self._pos + width
        if pos > self._end:
            raise Malformed(f"{self.name} ends inside {section} {field}".replace("  ", " "))
        self._pos = pos
        return (self._bits >> (self._end - pos)) & ((1 << width) - 1)

    def flag(self, field: str, section: str = "") -> bool:
        return self.read(1, field, section) == 1

    def letters(self, field: str) -> str:
        """Two 6-bit letters (``A`` = 0), e.g. a language or a country code."""
        first, second = self.read(6, field), self.read(6, field)
        if first >= _LETTERS or second >= _LETTERS:
            raise Malformed(f"{field} is not two letters A-Z")
        return chr(65 + first) + chr(65 + second)

    def finish(self) -> None:
        """Refuse a segment whose bits after the last field are not all zero."""
        rest = self._end - self._pos
        if self._bits & ((1 << rest) - 1):
            raise Malformed(f"{self.name} has non-zero bits after its last field")
