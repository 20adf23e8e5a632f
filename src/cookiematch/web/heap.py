"""A served worker's garbage collector, settled once the worker has started (``heap.py``)."""

from __future__ import annotations

from cookiematch.heap import settle

__all__ = ["settle_heap"]


async def settle_heap() -> None:
    """The App's last startup hook in a served worker (``web/server.py``)."""
    settle()
