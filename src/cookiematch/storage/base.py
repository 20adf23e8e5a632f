"""The storage interface every backend implements.

Keys are ``str`` (keys that must live on one cluster node share a ``{hash tag}``); values are
``bytes``. TTLs are seconds. Backends wrap their own errors in StorageError.

Durability: with ``Durability.ACK`` a write coroutine returns only once the write is durable
(group commit: concurrent writes share one commit/fsync); with ``Durability.ASYNC`` it returns
once queued.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass


class Durability(enum.Enum):
    ACK = "ack"
    ASYNC = "async"


@dataclass(frozen=True, slots=True)
class Write:
    """One write of a batch: ``value is None`` deletes the key."""

    key: str
    value: bytes | None
    ttl: float | None = None


class Store(ABC):
    """Async key-value and field-map store."""

    durability: Durability

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None: ...

    @abstractmethod
    async def write_many(self, writes: Sequence[Write]) -> None:
        """Apply several writes; atomically where the backend can (one transaction)."""

    @abstractmethod
    async def delete(self, key: str) -> bool: ...

    @abstractmethod
    async def hget(self, key: str, field: str) -> bytes | None: ...

    @abstractmethod
    async def hgetall(self, key: str) -> dict[str, bytes]: ...

    @abstractmethod
    async def hset(
        self, key: str, mapping: Mapping[str, bytes], *, ttl: float | None = None
    ) -> None:
        """Set fields; ``ttl`` applies to these fields (per-field expiry)."""

    @abstractmethod
    async def hdel(self, key: str, fields: Sequence[str]) -> int: ...

    @abstractmethod
    def scan(self, prefix: str, *, batch: int = 1000) -> AsyncIterator[tuple[str, bytes]]:
        """Iterate plain keys starting with ``prefix`` and their values (not field maps)."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable if the backend cannot be reached."""

    @abstractmethod
    async def close(self) -> None:
        """Flush pending writes and release resources."""


def open_store(
    url: str,
    *,
    durability: Durability = Durability.ACK,
    clock: Callable[[], float] | None = None,
) -> Store:
    """Open the backend named by the URL scheme (``sqlite:///path``; ``redis://`` later)."""
    raise NotImplementedError
