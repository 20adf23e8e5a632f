"""Buyers, user lists and buyers' API credentials: the configured ones, overlaid with changes
made through the admin API.

Reads are synchronous dictionary look-ups (the pixel hot path); changes are written to the
store first, so that they survive a restart and reach other workers on their next refresh.
A deleted configured entry is remembered as a tombstone. Entries are stored in the format of
``exchange/codec.py`` as the fields of three field maps (``BUYERS_KEY`` by nid,
``USER_LISTS_KEY`` by list ID, ``CREDENTIALS_KEY`` by credential ID), read in one store call
by a refresh (every 2 s in each worker) that finds them changed: what a reading costs grows
with the registry, never with the rest of the store (a prefix scan walks the whole keyspace
on Redis).

Every change written to the maps is followed by a new change token in ``CHANGED_KEY``, and a
refresh reads the maps only when the token changed or once they are a minute old
(``storage/change_watch.py``): with 50,000 user lists a reading of the maps costs the
worker's event loop about 100 ms, the token one point read.

An earlier version kept buyers and user lists one key each (``LEGACY_BUYER_PREFIX``,
``LEGACY_USER_LIST_PREFIX``). A registry's first refresh moves them into the maps once per
store (``storage/moved_keys.py``; ``MOVED_KEY`` says it is done) and deletes them.

A user list ID stays its owner's: a deleted list leaves a ``DeletedList`` naming its owner
(browsers' memberships of the ID outlive the list), and ``list_holder`` answers who holds an
ID, live or deleted. Deleting a buyer revokes its credentials.

A stored entry that no longer validates (e.g. a redirect URL written before a stricter rule)
does not stop the others: it keeps its last good value in this worker, or is left out, and is
logged once with the reason until it is written again.

``on_buyers`` (optional) is awaited with the buyers about to be served, before they are: at a
refresh before the new view replaces the old one, at a ``put_buyer`` before the entry is
stored (``exchange/hosted_nids.py`` records the hosted buyers this way).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal, TypeVar

import msgspec

from cookiematch.clock import Clock
from cookiematch.exchange import codec
from cookiematch.exchange.model import Buyer, Credential, UserList
from cookiematch.formats import Nid
from cookiematch.storage.base import Store
from cookiematch.storage.change_watch import ChangeWatch
from cookiematch.storage.moved_keys import move_into_maps

BUYERS_KEY = "exchange:buyers"  # field map: nid -> record or tombstone
USER_LISTS_KEY = "exchange:user_lists"  # field map: list ID -> record, deleted list or tombstone
CREDENTIALS_KEY = "exchange:credentials"  # field map: credential id -> record or tombstone
LEGACY_BUYER_PREFIX = "exchange:buyer:"  # an earlier version's keys, one a buyer
LEGACY_USER_LIST_PREFIX = "exchange:user_list:"  # and one a user list
MOVED_KEY = "exchange:registry:moved"  # set once the earlier version's keys are in the maps
CHANGED_KEY = "exchange:registry:changed"  # the maps' change token (``ChangeWatch``)
_LEGACY = ((LEGACY_BUYER_PREFIX, BUYERS_KEY), (LEGACY_USER_LIST_PREFIX, USER_LISTS_KEY))
_TOMBSTONE = b"null"


class DeletedList(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The stored record of a deleted user list: the owner keeps its ID."""

    deleted: Literal[True]
    owner: Nid


log = logging.getLogger(__name__)
T = TypeVar("T", bound=msgspec.Struct)
K = TypeVar("K", str, int)


class ExchangeRegistry:
    def __init__(
        self,
        store: Store,
        buyers: Iterable[Buyer] = (),
        user_lists: Iterable[UserList] = (),
        credentials: Iterable[Credential] = (),
        *,
        on_buyers: Callable[[Iterable[Buyer]], Awaitable[None]] | None = None,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self._store = store
        self._on_buyers = on_buyers
        self._changes = ChangeWatch(store, CHANGED_KEY, monotonic=monotonic)
        self._configured_buyers = {b.nid: b for b in buyers}
        self._configured_lists = {u.id: u for u in user_lists}
        self._buyers = dict(self._configured_buyers)
        self._lists = dict(self._configured_lists)
        self._owned = _owned(self._lists)
        self._holders = {list_id: u.owner for list_id, u in self._lists.items()}
        self._configured_credentials = {c.id: c for c in credentials}
        self._credentials = dict(self._configured_credentials)
        self._by_hash = _by_hash(self._credentials)
        self._refused: dict[str, bytes] = {}  # key -> the stored value already logged as refused
        # key -> the stored value and what it decoded to at the last refresh: an unchanged
        # entry is not decoded again and stays the same object (what is prepared from a
        # buyer, ``exchange/common_match.py``, is kept while the object is)
        self._decoded: dict[str, tuple[bytes, msgspec.Struct]] = {}
        self._moved = False  # the earlier version's keys known to be in the maps

    def buyer(self, nid: str) -> Buyer | None:
        return self._buyers.get(nid)

    def user_list(self, list_id: int) -> UserList | None:
        return self._lists.get(list_id)

    def owned_lists(self, nid: str) -> frozenset[int]:
        """The IDs of the user lists that belong to buyer ``nid``."""
        return self._owned.get(nid, frozenset())

    def held_lists(self, nid: str) -> int:
        """How many user list IDs buyer ``nid`` holds, its deleted lists' included."""
        return sum(1 for owner in self._holders.values() if owner == nid)

    async def list_holder(self, list_id: int) -> str | None:
        """The buyer that holds user list ID ``list_id`` (its list, or its deleted list), as
        the store says now; None for a free ID."""
        value = await self._store.hget(USER_LISTS_KEY, str(list_id))
        configured = self._configured_lists.get(list_id)
        if value is None or value == _TOMBSTONE:  # the earlier tombstone names no owner
            return configured.owner if configured is not None else None
        deleted = _deleted(value)
        if deleted is not None:
            return deleted.owner
        try:
            return codec.decode_stored(value, UserList).owner
        except (msgspec.ValidationError, msgspec.DecodeError):
            return self._holders.get(list_id)

    async def stored_buyer(self, nid: str) -> Buyer | None:
        """Buyer ``nid`` as the store holds it now (not this worker's view, which may miss a
        change made through another worker): what a change of one field starts from."""
        value = await self._store.hget(BUYERS_KEY, nid)
        if value is None:
            return self._configured_buyers.get(nid)
        if value == _TOMBSTONE:
            return None
        try:
            return codec.decode_stored(value, Buyer)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return self._buyers.get(nid)  # refused: its last good value, as at a refresh

    def credential(self, credential_id: str) -> Credential | None:
        return self._credentials.get(credential_id)

    def credential_by_hash(self, token_sha256: str) -> Credential | None:
        """The credential whose token hashes to ``token_sha256`` (hex), if any."""
        return self._by_hash.get(token_sha256)

    def credentials(self, nid: str) -> list[Credential]:
        """The credentials of one buyer, by id."""
        found = [c for c in self._credentials.values() if c.nid == nid]
        return sorted(found, key=lambda c: c.id)

    def buyers(self) -> list[Buyer]:
        return sorted(self._buyers.values(), key=lambda b: b.nid)

    def user_lists(self) -> list[UserList]:
        return sorted(self._lists.values(), key=lambda u: u.id)

    async def refresh(self) -> None:
        """Rebuild the view: configured entries, then stored changes on top (the three maps
        in one store call; an entry stored unchanged since the last refresh is kept as it
        was); nothing but the change token while it is unchanged (the module docstring)."""
        if not self._moved:
            await self.move_legacy()
        stored = await self._changes.read_if_changed(
            lambda: self._store.hgetall_many([BUYERS_KEY, USER_LISTS_KEY, CREDENTIALS_KEY])
        )
        if stored is None:
            return
        stored_buyers, stored_lists, stored_credentials = stored
        decoded, self._decoded = self._decoded, {}
        buyers = dict(self._configured_buyers)
        for nid, value in stored_buyers.items():
            if value == _TOMBSTONE:
                buyers.pop(nid, None)
            else:
                label = f"{BUYERS_KEY}[{nid}]"
                self._overlay(buyers, nid, label, value, Buyer, decoded, self._buyers.get(nid))
        lists = dict(self._configured_lists)
        holders = {list_id: u.owner for list_id, u in lists.items()}
        for field, value in stored_lists.items():
            list_id = int(field)
            if value == _TOMBSTONE:  # the earlier format: names no owner
                lists.pop(list_id, None)
            elif (deleted := _deleted(value)) is not None:
                lists.pop(list_id, None)
                holders[list_id] = deleted.owner
            else:
                label = f"{USER_LISTS_KEY}[{field}]"
                last_list = self._lists.get(list_id)
                self._overlay(lists, list_id, label, value, UserList, decoded, last_list)
                if list_id in lists:
                    holders[list_id] = lists[list_id].owner
        credentials = dict(self._configured_credentials)
        for ident, value in stored_credentials.items():
            if value == _TOMBSTONE:
                credentials.pop(ident, None)
            else:
                last = self._credentials.get(ident)
                label = f"{CREDENTIALS_KEY}[{ident}]"
                self._overlay(credentials, ident, label, value, Credential, decoded, last)
        if self._on_buyers is not None:
            await self._on_buyers(buyers.values())
        self._buyers, self._lists, self._owned = buyers, lists, _owned(lists)
        self._holders = holders
        self._credentials, self._by_hash = credentials, _by_hash(credentials)

    async def move_legacy(self) -> int:
        """The earlier version's keys moved into the maps, once per store
        (``storage/moved_keys.py``: a field a map already holds is kept). The keys moved."""
        moved = await move_into_maps(self._store, _LEGACY, MOVED_KEY)
        self._moved = True
        if moved:
            await self._changes.announce()
            log.info("moved %d buyers and user lists of an earlier version into %s and %s",
                     moved, BUYERS_KEY, USER_LISTS_KEY)  # fmt: skip
        return moved

    def _overlay(
        self,
        view: dict[K, T],
        ident: K,
        key: str,
        value: bytes,
        tp: type[T],
        decoded: dict[str, tuple[bytes, msgspec.Struct]],
        last: T | None,
    ) -> None:
        """Put the stored entry in ``view``: what ``decoded`` (the last refresh's) holds for
        the same value, else the value decoded; one that does not decode keeps ``last`` (or
        is left out) and is logged once per stored value."""
        held = decoded.get(key)
        if held is not None and held[0] == value and isinstance(held[1], tp):
            view[ident] = held[1]
            self._decoded[key] = held
            return
        try:
            entry = codec.decode_stored(value, tp)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            if self._refused.get(key) != value:
                self._refused[key] = value
                kept = "keeping its last good value" if last is not None else "left out"
                log.error("stored %s is refused (%s); %s", key, exc, kept)
            if last is not None:
                view[ident] = last
            else:
                view.pop(ident, None)
        else:
            view[ident] = entry
            self._decoded[key] = (value, entry)
            self._refused.pop(key, None)

    async def put_buyer(self, buyer: Buyer) -> None:
        if self._on_buyers is not None:
            await self._on_buyers((buyer,))
        await self._store.hset(BUYERS_KEY, {buyer.nid: codec.encode(buyer)})
        await self._changes.announce()
        self._buyers[buyer.nid] = buyer

    async def delete_buyer(self, nid: str) -> bool:
        """Delete the buyer and revoke its credentials (those created through other workers
        too: the stored ones are read afresh)."""
        existed = nid in self._buyers
        stored = await self._store.hgetall(CREDENTIALS_KEY)
        await self._revoke(
            {c.id for c in self._credentials.values() if c.nid == nid}
            | {ident for ident, value in stored.items() if _nid_of(value) == nid}
        )
        await self._store.hset(BUYERS_KEY, {nid: _TOMBSTONE})
        await self._changes.announce()
        self._buyers.pop(nid, None)
        return existed

    async def put_user_list(self, user_list: UserList) -> None:
        await self._store.hset(USER_LISTS_KEY, {str(user_list.id): codec.encode(user_list)})
        await self._changes.announce()
        self._lists[user_list.id] = user_list
        self._holders[user_list.id] = user_list.owner
        self._owned = _owned(self._lists)

    async def delete_user_list(self, list_id: int) -> bool:
        """Delete the list; its owner keeps the ID (``DeletedList``)."""
        found = self._lists.get(list_id)
        owner = found.owner if found is not None else self._holders.get(list_id)
        record = codec.encode(DeletedList(True, owner)) if owner is not None else _TOMBSTONE
        await self._store.hset(USER_LISTS_KEY, {str(list_id): record})
        await self._changes.announce()
        self._lists.pop(list_id, None)
        self._owned = _owned(self._lists)
        return found is not None

    async def put_credential(self, credential: Credential) -> None:
        await self._store.hset(CREDENTIALS_KEY, {credential.id: codec.encode(credential)})
        await self._changes.announce()
        self._credentials[credential.id] = credential
        self._by_hash = _by_hash(self._credentials)

    async def delete_credential(self, credential_id: str) -> bool:
        existed = credential_id in self._credentials
        await self._revoke({credential_id})
        return existed

    async def _revoke(self, idents: set[str]) -> None:
        """Revoke credentials: a configured one is remembered as a tombstone, another one's
        field is removed."""
        configured = {i for i in idents if i in self._configured_credentials}
        if configured:
            await self._store.hset(CREDENTIALS_KEY, dict.fromkeys(configured, _TOMBSTONE))
        if idents - configured:
            await self._store.hdel(CREDENTIALS_KEY, sorted(idents - configured))
        if idents:
            await self._changes.announce()
        for ident in idents:
            self._credentials.pop(ident, None)
        self._by_hash = _by_hash(self._credentials)


def _deleted(value: bytes) -> DeletedList | None:
    """The stored value as a deleted list's record, or None if it is not one."""
    if not value.startswith(b"{") or b'"deleted"' not in value:
        return None
    try:
        return msgspec.json.decode(value, type=DeletedList)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def _nid_of(value: bytes) -> object:
    """The ``nid`` of a stored credential record (None for a tombstone or a bad record)."""
    try:
        record = msgspec.json.decode(value)
    except msgspec.DecodeError:
        return None
    return record.get("nid") if isinstance(record, dict) else None


def _by_hash(credentials: dict[str, Credential]) -> dict[str, Credential]:
    return {c.token_sha256: c for c in credentials.values()}


def _owned(lists: dict[int, UserList]) -> dict[str, frozenset[int]]:
    owned: dict[str, set[int]] = {}
    for user_list in lists.values():
        owned.setdefault(user_list.owner, set()).add(user_list.id)
    return {nid: frozenset(ids) for nid, ids in owned.items()}
