"""What a role holds about one person, for access (GDPR art. 15) and erasure (art. 17).

A *subject* is the identifier a role knows a browser or user by: the exchange's browser ID
(its cookie value), the buyer's user ID, the DMP's uid. Each role writes one ``SubjectData``:
``access`` lists every stored record about the subject with its remaining lifetime, ``erase``
removes them all (and queues whatever the role must tell others) and says how many records of
each kind it removed. The admin API (``web/subjects.py``), the CLI (``cookiematch subject``)
and each role's opt-out page serve any role's ``SubjectData`` alike.

``HeldKey`` names one key a role holds about a subject; ``read_held`` and ``erase_held`` are the
store work every role shares (one read or delete per key: no scan).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from cookiematch.storage import Store

__all__ = [
    "ErasureReport",
    "HeldKey",
    "StoredRecord",
    "SubjectData",
    "SubjectReport",
    "erase_held",
    "read_held",
    "render_bytes",
]


class StoredRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One stored value about a subject: a plain key, or one field of a field map."""

    kind: str
    """What it is, in the role's words (``hosted_match``, ``user_list``, ``profile`` …)."""
    key: str
    field: str | None = None
    value: object
    """Its content, decoded for people (JSON)."""
    expires_in_seconds: float | None
    """How long it is kept from now (None: until erased; every kind should have a bound)."""


class SubjectReport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one role stores about one subject."""

    role: str
    subject: str
    records: list[StoredRecord]


class ErasureReport(msgspec.Struct, frozen=True, kw_only=True):
    """What an erasure removed (records per kind) and whom it queued a notice for."""

    role: str
    subject: str
    erased: dict[str, int]
    notified: list[str] = []


class SubjectData(Protocol):
    """Access and erasure of one role's data about a subject.

    Both raise ``InvalidSubject`` for an identifier not in the role's format, and
    ``StorageError`` when the store fails (an erasure may then be partial: it is safe to
    repeat).
    """

    role: str

    async def access(self, subject: str) -> SubjectReport: ...

    async def erase(self, subject: str) -> ErasureReport: ...


@dataclass(frozen=True, slots=True)
class HeldKey:
    """One key a role holds about a subject: its kind, the key, whether it is a field map,
    and how its stored bytes read to a person (default: ``render_bytes``)."""

    kind: str
    key: str
    is_map: bool = False
    render: Callable[[bytes], object] | None = None


def render_bytes(raw: bytes) -> object:
    """UTF-8 text as it is, anything else as ``{"base64": …}``."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}


async def read_held(store: Store, held: Sequence[HeldKey]) -> list[StoredRecord]:
    """Every live value and field of ``held``, in order, with its remaining lifetime."""
    records: list[StoredRecord] = []
    for item in held:
        render = item.render or render_bytes
        if item.is_map:
            fields = await store.hgetall_entries(item.key)
            for name in sorted(fields):
                raw, ttl = fields[name]
                records.append(
                    StoredRecord(
                        kind=item.kind,
                        key=item.key,
                        field=name,
                        value=render(raw),
                        expires_in_seconds=ttl,
                    )
                )
        else:
            entry = await store.get_entry(item.key)
            if entry is not None:
                raw, ttl = entry
                records.append(
                    StoredRecord(
                        kind=item.kind, key=item.key, value=render(raw), expires_in_seconds=ttl
                    )
                )
    return records


async def erase_held(store: Store, held: Sequence[HeldKey]) -> dict[str, int]:
    """Delete every key of ``held``; how many held something live, per kind (every kind of
    ``held`` is in the answer, 0 when nothing was there)."""
    erased = dict.fromkeys((item.kind for item in held), 0)
    for item in held:
        if await store.delete(item.key):
            erased[item.kind] += 1
    return erased
