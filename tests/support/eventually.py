"""Assertions on what a browser request wrote, once it has landed.

A browser request's store call answers by its deadline (50 ms by default) even when the
store has not: a commit whose fsync stalls past it (a disk writing back a burst) is answered
with the pixel, and its write lands a moment later (docs/storage.md, "Disk flushes and store
deadlines"). A test that reads such a write back right away retries its assertion for a few
seconds instead of racing the disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], *, seconds: float = 5.0, pause: float = 0.05) -> T:
    """``check()``'s result once it stops raising AssertionError; the last one after
    ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(pause)
