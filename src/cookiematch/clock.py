"""Time as every layer takes it: injected, never read directly by the domain.

``Clock`` is ``time.time`` in production and a settable fake in tests; durations configured in
days become seconds through ``SECONDS_PER_DAY``.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["SECONDS_PER_DAY", "Clock"]

Clock = Callable[[], float]
"""Seconds since the epoch, as ``time.time`` answers."""

SECONDS_PER_DAY = 86_400
