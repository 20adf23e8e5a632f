"""The DMP's partners, segments and destinations: the configured ones, overlaid with changes
made through the admin API, picked up by every worker within a refresh.

    {dmp:def}           field map   "<kind>:<id>" -> the entry as JSON (the configuration's
                                    Struct, secrets included: every worker needs them), or
                                    ``null``: deleted
    {dmp:def}:changed   plain       the map's change token (``storage/change_watch.py``)

One field map, so that a refresh is one read however large the store (no key scan); and read
only when its change token changed, or once a minute: a refresh (every second in each worker)
that decodes and validates every stored entry costs the event loop about 24 ms for 500
partners, the token one point read.

``current`` is the ``[dmp]`` table as it stands: the file's entries in their order, each
replaced by its stored change, stored additions after them (by id), tombstones removed.
Changes are validated as at load (``config/dmp_entries.py``) and written to the store before
they are served; ``on_change`` hooks (constructor arguments) then rebuild the plain mappings
the request paths read. ``refresh`` reads the store again: a stored entry that no longer
decodes or validates keeps its last good value (or is left out); a view that still does not
validate as a whole is not served (the last one stays); each is logged once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import get_args

import msgspec

from cookiematch.clock import Clock
from cookiematch.config.convert import convert
from cookiematch.config.dmp import DmpConfig
from cookiematch.config.dmp_entries import (
    ENTRY_TYPES,
    Entry,
    Kind,
    entries_of,
    parse_entry,
    with_entry,
    without_entry,
)
from cookiematch.errors import NotFound
from cookiematch.secret import MASK, Secret
from cookiematch.storage.base import Store
from cookiematch.storage.change_watch import ChangeWatch

__all__ = ["CHANGED_KEY", "DEFINITIONS_KEY", "DmpDefinitions", "encode_masked"]

log = logging.getLogger(__name__)

DEFINITIONS_KEY = "{dmp:def}"
CHANGED_KEY = "{dmp:def}:changed"
_TOMBSTONE = b"null"
KINDS: tuple[Kind, ...] = get_args(Kind)

OnChange = Callable[[DmpConfig], None]


def _stored_hook(value: object) -> object:
    if isinstance(value, Secret):
        return value.reveal()
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def _masked_hook(value: object) -> object:
    if isinstance(value, Secret):
        return MASK
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


_STORED = msgspec.json.Encoder(enc_hook=_stored_hook)
_MASKED = msgspec.json.Encoder(enc_hook=_masked_hook)


def encode_masked(value: object) -> bytes:
    """``value`` as JSON for people to see: every secret in it ``MASK``."""
    return _MASKED.encode(value)


def _field(kind: Kind, ident: str) -> str:
    return f"{kind}:{ident}"


class DmpDefinitions:
    def __init__(
        self,
        store: Store,
        configured: DmpConfig,
        *,
        on_change: Sequence[OnChange] = (),
        monotonic: Clock = time.monotonic,
    ) -> None:
        self._store = store
        self._changes = ChangeWatch(store, CHANGED_KEY, monotonic=monotonic)
        self._configured = configured
        self.current = configured
        self._on_change = tuple(on_change)
        self._refused: dict[str, bytes] = {}  # key -> the stored value already logged
        self._refused_now: set[str] = set()  # the keys refused by this refresh
        self._refused_view: str | None = None  # the problems of a view already logged

    def entries(self, kind: Kind) -> tuple[Entry, ...]:
        return entries_of(self.current, kind)

    def entry(self, kind: Kind, ident: str) -> Entry:
        found = next((e for e in self.entries(kind) if e.id == ident), None)
        if found is None:
            raise NotFound(f"no {kind[:-1]} {ident!r}")
        return found

    async def refresh(self) -> None:
        """Rebuild the view: configured entries, then stored changes on top; nothing but the
        change token read while it is unchanged (the module docstring)."""
        found = await self._changes.read_if_changed(lambda: self._store.hgetall(DEFINITIONS_KEY))
        if found is None:
            return
        self._refused_now = set()
        stored: list[tuple[Kind, str, str, bytes]] = []
        for key, value in found.items():
            kind, _, ident = key.partition(":")
            if kind in KINDS:
                stored.append((kind, ident, key, value))
        view = self._configured
        for kind, ident, key, value in sorted(stored):
            if value == _TOMBSTONE:
                view = with_entry(view, kind, ident, None)
                continue
            entry = self._decode(kind, ident, key, value)
            view = with_entry(view, kind, ident, entry)
        view = self._without_refused(view, {(k, i): (key, v) for k, i, key, v in stored})
        self._refused = {k: v for k, v in self._refused.items() if k in self._refused_now}
        problems = view.problems()
        if problems:
            text = "; ".join(f"{k}: {m}" for k, m in problems)
            if self._refused_view != text:
                self._refused_view = text
                log.error("stored DMP definitions are refused (%s); keeping the last view", text)
            return
        self._refused_view = None
        self._serve(view)

    def _decode(self, kind: Kind, ident: str, key: str, value: bytes) -> Entry | None:
        """The stored entry; one that does not decode keeps its last good value (or is left
        out), logged once per stored value."""
        try:
            entry = convert(msgspec.json.decode(value), ENTRY_TYPES[kind])
            if entry.id != ident:
                raise msgspec.ValidationError(f"its id is {entry.id!r}")
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            last = self._last(kind, ident)
            self._log_refused(f"{DEFINITIONS_KEY} {key}", value, exc, last)
            return last
        return entry

    def _without_refused(
        self, view: DmpConfig, stored: dict[tuple[Kind, str], tuple[str, bytes]]
    ) -> DmpConfig:
        """``view`` with each stored entry its problems name (``partners[1].sync_url``) back
        at its last good value (or left out), logged once per stored value."""
        for key, message in view.problems():
            kind, _, rest = key.partition("[")
            index = rest.partition("]")[0]
            if kind not in KINDS or not index.isdigit():
                continue
            found = entries_of(view, kind)
            ident = found[int(index)].id if int(index) < len(found) else None
            if ident is None or (kind, ident) not in stored:
                continue
            stored_key, value = stored.pop((kind, ident))
            last = self._last(kind, ident)
            self._log_refused(f"{DEFINITIONS_KEY} {stored_key}", value, message, last)
            view = with_entry(view, kind, ident, last)
        return view

    def _last(self, kind: Kind, ident: str) -> Entry | None:
        return next((e for e in entries_of(self.current, kind) if e.id == ident), None)

    def _log_refused(self, key: str, value: bytes, reason: object, last: Entry | None) -> None:
        self._refused_now.add(key)
        if self._refused.get(key) != value:
            self._refused[key] = value
            kept = "keeping its last good value" if last is not None else "left out"
            log.error("stored %s is refused (%s); %s", key, reason, kept)

    def _serve(self, view: DmpConfig) -> None:
        if view == self.current:
            return
        self.current = view
        for hook in self._on_change:
            hook(view)

    async def put(self, kind: Kind, ident: str, data: object) -> tuple[Entry, bool]:
        """Validate and store the entry; served at once here. True if it is new."""
        created = all(e.id != ident for e in self.entries(kind))
        entry, view = parse_entry(self.current, kind, ident, data)
        await self._store.hset(DEFINITIONS_KEY, {_field(kind, ident): _STORED.encode(entry)})
        await self._changes.announce()
        self._serve(view)
        return entry, created

    async def delete(self, kind: Kind, ident: str) -> None:
        """Remove the entry (a tombstone hides a configured one); NotFound, or 409 if other
        entries still name it."""
        self.entry(kind, ident)
        view = without_entry(self.current, kind, ident)
        await self._store.hset(DEFINITIONS_KEY, {_field(kind, ident): _TOMBSTONE})
        await self._changes.announce()
        self._serve(view)
