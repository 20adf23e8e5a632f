"""The running event loop without a system call on the hot path.

``asyncio.get_running_loop()`` (and whatever calls it: ``asyncio.current_task()``, an
``asyncio.Event``'s wait) compares the loop's process id with ``getpid()``, a system call
(~0.35 µs on a KVM guest, docs/performance.md "The running loop without `getpid`"), so that a
forked child never uses its parent's loop. An object that serves one event loop at a time
(a store, its coalescer, a set of deadlines) keeps the loop it found and asks again only when
that loop is not the one this process last found running, or no longer runs (tests run one
loop after another). A fork forgets the loop found: a child asks again, whatever it copied.
"""

from __future__ import annotations

import asyncio
import os

__all__ = ["running_loop"]

_found: asyncio.AbstractEventLoop | None = None
"""The loop ``asyncio.get_running_loop()`` last answered in this process."""


def _forget() -> None:
    global _found
    _found = None


os.register_at_fork(after_in_child=_forget)


def running_loop(known: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    """``known`` while it is the loop last found in this process and runs, else
    ``asyncio.get_running_loop()`` (RuntimeError without one). For an object used from one
    event loop's thread at a time."""
    global _found
    if known is not None and known is _found and known.is_running():
        return known
    loop = _found = asyncio.get_running_loop()
    return loop
