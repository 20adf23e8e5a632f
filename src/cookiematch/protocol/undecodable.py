"""The one result every consent decoder gives for a string it cannot read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A consent string that does not decode; whoever asks must treat it as no consent.

    ``reason`` says what was wrong, for logs and counters; it never repeats the input.
    """

    reason: str
