"""The running event loop without a system call on the hot path.

``asyncio.get_running_loop()`` (and whatever calls it: ``asyncio.current_task()``, an
``asyncio.Event``'s wait) compares the loop's process id with ``getpid()``, a system call
(~0.35 µs on a KVM guest, docs/performance.md "The running loop without getpid"), so that a
forked child never uses its parent's loop. An object that serves one event loop at a time
(a store, its coalescer, a set of deadlines) keeps the loop it found and asks again only when
that loop no longer runs: after a fork (the child's copy of the loop is not running) or once
the loop has stopped (tests run one loop after another).
"""

from __future__ import annotations

import asyncio

__all__ = ["running_loop"]


def running_loop(known: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    """``known`` while it runs, else ``asyncio.get_running_loop()`` (RuntimeError without
    one). For an object used from one event loop's thread at a time."""
    if known is not None and known.is_running():
        return known
    return asyncio.get_running_loop()
