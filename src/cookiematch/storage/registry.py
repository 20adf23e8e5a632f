"""The URL scheme registry: which backend serves a storage URL, and opening it.

Kept apart from the interface (``storage.base``): the backends import the interface, and this
module imports the backends, each only when a URL names it (Redis is an optional dependency).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cookiematch.clock import Clock
from cookiematch.errors import StorageError
from cookiematch.storage.base import Durability, Store

Opener = Callable[[str, Durability, Clock], Store]
"""Builds a backend from its URL; registered in ``SCHEMES`` under each URL scheme it serves."""


def _open_sqlite(url: str, durability: Durability, clock: Clock) -> Store:
    from cookiematch.storage.sqlite import SQLiteStore

    return SQLiteStore.from_url(url, durability=durability, clock=clock)


def _open_redis(url: str, durability: Durability, clock: Clock) -> Store:
    try:
        from cookiematch.storage.redis_store import RedisStore
    except ImportError as exc:  # the optional dependency: pip install 'cookiematch[redis]'
        raise StorageError(f"redis storage needs the redis package: {exc}") from exc
    return RedisStore.from_url(url, durability=durability, clock=clock)


SCHEMES: dict[str, Opener] = {
    "sqlite": _open_sqlite,
    "redis": _open_redis,
    "rediss": _open_redis,
    "redis+cluster": _open_redis,
    "rediss+cluster": _open_redis,
}


def open_store(
    url: str,
    *,
    durability: Durability = Durability.ACK,
    clock: Clock | None = None,
) -> Store:
    """Open the backend named by the URL scheme.

    ``sqlite:///abs/path``, ``sqlite://relative/path``, ``redis://[:password@]host:port/db``,
    ``rediss://…`` (TLS), ``redis+cluster://host:port,host:port``. Raises StorageError for an
    unknown scheme or a bad URL, and StoreUnavailable if the backend cannot be opened; then
    ``await store.start()`` checks that it can be reached (Redis connects lazily).
    """
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StorageError(f"storage URL {url!r} has no scheme (expected e.g. sqlite:///path)")
    opener = SCHEMES.get(scheme.lower())
    if opener is None:
        known = ", ".join(sorted(SCHEMES))
        raise StorageError(f"unknown storage scheme {scheme!r} (known: {known})")
    return opener(url, durability, clock or time.time)


async def connect_store(
    url: str,
    *,
    durability: Durability = Durability.ACK,
    clock: Clock | None = None,
) -> Store:
    """``open_store`` then ``start``: a store known to be reachable, or StoreUnavailable."""
    store = open_store(url, durability=durability, clock=clock)
    try:
        await store.start()
    except BaseException:
        await store.close()
        raise
    return store
