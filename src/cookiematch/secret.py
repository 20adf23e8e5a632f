"""A secret value that never shows itself, for every layer that holds one: configuration
tokens and keys, a buyer's webhook secret (a domain entity the admin API and the store carry).
"""

from __future__ import annotations

import hmac
from typing import Any

__all__ = ["MASK", "Secret"]

MASK = "**********"
"""What a secret shows in its place (``repr``, ``str``, an admin API's answers)."""


class Secret:
    """A string that never shows itself: ``repr`` and ``str`` are masked, ``reveal()`` is not.

    Comparison is constant-time, so ``Secret`` values can be compared with presented tokens.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Expected `str`")
        object.__setattr__(self, "_value", value)

    @classmethod
    def from_config(cls, value: object) -> Secret:
        if not isinstance(value, str):
            raise TypeError(f"Expected `str`, got `{type(value).__name__}`")
        return cls(value)

    def reveal(self) -> str:
        """The secret itself: call it only where the value is used, never to log it."""
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other = other._value
        if not isinstance(other, str):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")
