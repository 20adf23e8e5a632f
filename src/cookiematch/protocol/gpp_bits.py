"""The GPP's bit encoding: base64url characters read as a bit string, fixed-width integers,
Fibonacci-coded integers and ranges (IAB GPP "Consent String Specification", data types).

A :class:`BitReader` raises :class:`MalformedGpp` on anything that does not fit; the GPP
decoder turns it into :class:`~cookiematch.protocol.undecodable.Undecodable`.
"""

from __future__ import annotations

import re

BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_BITS = str.maketrans({char: format(index, "06b") for index, char in enumerate(BASE64URL)})
_BASE64URL_TEXT = re.compile(r"[A-Za-z0-9_-]+")

# A writer pads the last field with zeros to a whole character (the spec) or to a whole byte
# and then a whole character (the IAB's encoders): never 12 bits or more.
MAX_PADDING_BITS = 11
# The longest Fibonacci code word read, terminator excluded: values up to 17710.
MAX_FIBONACCI_BITS = 20


def _fibonacci_numbers(count: int) -> tuple[int, ...]:
    """1, 2, 3, 5, 8, ...: the value of each code bit, left to right."""
    numbers = [1, 2]
    while len(numbers) < count:
        numbers.append(numbers[-1] + numbers[-2])
    return tuple(numbers)


_FIBONACCI = _fibonacci_numbers(MAX_FIBONACCI_BITS)


class MalformedGpp(ValueError):
    """A GPP string, or one of its parts, is not what the format says it is. Raised inside
    the GPP decoder only: ``decode_gpp`` answers Undecodable instead."""


class BitReader:
    """Reads one base64url segment's bits, left to right."""

    __slots__ = ("_bits", "_position")

    def __init__(self, segment: str) -> None:
        if _BASE64URL_TEXT.fullmatch(segment) is None:
            raise MalformedGpp("a segment is empty or not base64url")
        self._bits = segment.translate(_TO_BITS)
        self._position = 0

    def integer(self, width: int) -> int:
        """A fixed-width unsigned integer, most significant bit first."""
        start = self._position
        end = start + width
        if end > len(self._bits):
            raise MalformedGpp("the segment ends inside a field")
        self._position = end
        return int(self._bits[start:end], 2)

    def two_bit_values(self, count: int) -> tuple[int, ...]:
        """``count`` consecutive 2-bit values: 0, 1 or 2 (3 means nothing in any section)."""
        bits = self.integer(2 * count)
        values = tuple((bits >> shift) & 3 for shift in range(2 * count - 2, -1, -2))
        if 3 in values:
            raise MalformedGpp("a 2-bit field holds 3")
        return values

    def fibonacci(self) -> int:
        """A Fibonacci-coded integer (>= 1): code bits ending in ``11``."""
        start = self._position
        end = self._bits.find("11", start)
        if end < 0:
            raise MalformedGpp("a Fibonacci integer has no terminator")
        if end + 1 - start > MAX_FIBONACCI_BITS:
            raise MalformedGpp("a Fibonacci integer is too long")
        self._position = end + 2
        code = self._bits[start : end + 1]
        return sum(_FIBONACCI[i] for i, bit in enumerate(code) if bit == "1")

    def fibonacci_range(self, max_values: int) -> tuple[int, ...]:
        """A Range(Fibonacci): a 12-bit count of entries, each a single ID or a group, every
        offset counted from the last ID seen (so the IDs come out strictly increasing).

        More than ``max_values`` IDs is malformed (checked before a group is expanded).
        """
        count = self.integer(12)
        if count > max_values:
            raise MalformedGpp("a range has more entries than allowed")
        values: list[int] = []
        last = 0
        for _ in range(count):
            is_group = self.integer(1)
            first = last + self.fibonacci()
            last = first + self.fibonacci() if is_group else first
            if len(values) + last - first + 1 > max_values:
                raise MalformedGpp("a range holds more IDs than allowed")
            values.extend(range(first, last + 1))
        return tuple(values)

    def finish(self) -> None:
        """Only padding may remain: fewer than 12 bits, all zero."""
        rest = self._bits[self._position :]
        if len(rest) > MAX_PADDING_BITS or "1" in rest:
            raise MalformedGpp("bits remain after the last field")
