"""Export destinations as plain values, and the batch a destination receives."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass


class FileFormat(enum.Enum):
    CSV = "csv"  # header "action,id", then "add,<id>" / "remove,<id>"
    JSONL = "jsonl"  # {"action": "add", "id": "<id>"} per line


@dataclass(frozen=True, slots=True)
class Delivery:
    """How batches travel: size, attempts and backoff (5xx, 408, 429, timeouts are retried)."""

    batch_size: int = 1000
    timeout_seconds: float = 10.0
    max_attempts: int = 5
    backoff_seconds: float = 0.5  # first wait; doubled each retry, with jitter
    max_backoff_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class HttpDestination:
    """JSON batches POSTed to ``url``, signed with HMAC-SHA256 of ``secret``."""

    id: str
    url: str
    secret: bytes
    partner: str | None  # whose IDs the destination receives; None: DMP uids
    delivery: Delivery = Delivery()
    gvl_vendor_id: int | None = None  # who receives them (consent), docs/privacy.md


@dataclass(frozen=True, slots=True)
class FileDestination:
    """One file per export; ``path`` may use ``{segment}``, ``{destination}``, ``{time}``."""

    id: str
    path: str
    format: FileFormat
    partner: str | None
    delivery: Delivery = Delivery()
    gvl_vendor_id: int | None = None


@dataclass(frozen=True, slots=True)
class ExchangeUserListDestination:
    """The exchange's user list ``user_list_id``: gids of buyer ``nid``, by its admin API."""

    id: str
    url: str  # the exchange admin base, e.g. http://exchange.example:8700
    token: str
    user_list_id: int
    nid: str
    partner: str  # the DMP partner whose IDs are that buyer's gids
    cver: int = 1
    delivery: Delivery = Delivery()
    gvl_vendor_id: int | None = None


Destination = HttpDestination | FileDestination | ExchangeUserListDestination


class Mode(enum.Enum):
    INCREMENTAL = "incremental"  # adds and removes since the last export
    FULL = "full"  # every current member, plus removes of those who left


@dataclass(frozen=True, slots=True)
class Batch:
    """Destination IDs to add and remove; ``id`` is derived from the content (idempotent)."""

    segment: str
    destination: str
    mode: Mode
    add: tuple[str, ...]
    remove: tuple[str, ...]
    add_uids: tuple[str, ...] = ()  # the DMP uids behind ``add`` and ``remove``, same order
    remove_uids: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        digest = hashlib.sha256(f"{self.segment}\n{self.destination}\n".encode())
        for prefix, ids in ((b"+", self.add), (b"-", self.remove)):
            for item in ids:
                digest.update(prefix + item.encode() + b"\n")
        return digest.hexdigest()[:32]

    @property
    def size(self) -> int:
        return len(self.add) + len(self.remove)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What the destination did with a batch: the IDs it refused, or that it never got it."""

    delivered: bool
    rejected: frozenset[str] = frozenset()
    attempts: int = 1
    error: str | None = None
