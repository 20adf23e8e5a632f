"""Redis backends: standalone (``redis://``, ``rediss://``) and Redis Cluster (``redis+cluster://``).

Every operation is queued to a ``Flusher`` (one pipeline per flush, ``transaction=False``);
see ``redis_pipeline``. Values carry a small header with their expiry (``redis_codec``), so reads
honour the store's clock and field maps get per-field expiry on Redis 7.0. Commands are single
key except ``MGET``, which is sent per hash slot on a cluster: never a cross-slot command.

Call ``await store.start()`` after ``open_store``: it raises StoreUnavailable, with the address
in the message, when Redis cannot be reached (opening a client does not connect).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from cookiematch.clock import Clock
from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.loops import running_loop
from cookiematch.storage import redis_codec as codec
from cookiematch.storage.base import (
    Durability,
    FieldEntry,
    FieldWrite,
    Page,
    Store,
    Write,
    as_bytes,
    check_ttl,
)
from cookiematch.storage.redis_pipeline import TRANSIENT, Command, Flusher, Op, reply_error
from cookiematch.storage.redis_scripts import (
    HSET_EXPIRING,
    HSWAP_EXPIRING,
    HSWAP_EXPIRING_EACH,
    HSWAP_FIELD_EACH,
    SET_IF_ABSENT,
)
from cookiematch.storage.redis_wire import Wire

_MGET_CHUNK = 1000  # keys per MGET
_SCAN_COUNT = 1000  # SCAN hint per call
KEYS_PER_SCRIPT = 256
"""Keys per ``HSWAP_EXPIRING_EACH`` call (``hswap_many`` on standalone Redis)."""


class RedisStore(Store):
    """Redis or Redis Cluster behind the Store interface. Build it with ``from_url``."""

    def __init__(
        self,
        client: Any,
        *,
        cluster: bool,
        address: str,
        durability: Durability = Durability.ACK,
        clock: Clock = time.time,
        max_pending: int = 10_000,
        retry_for: float = 5.0,
        max_batch: int = 5000,
    ) -> None:
        self._client = client
        self._cluster = cluster
        self.address = address
        self.durability = durability
        self._clock = clock
        self._async = durability is Durability.ASYNC
        self._max_pending = max_pending
        self._bulk = max_batch  # commands per op of a bulk call (hset_many, hgetall_many)
        self._name = f"redis{' cluster' if cluster else ''} {address}"
        self._flusher = Flusher(
            Wire(client, cluster=cluster), name=self._name, max_batch=max_batch, retry_for=retry_for
        )
        self._closing: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one the calls' futures are of

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        durability: Durability = Durability.ACK,
        clock: Clock = time.time,
        socket_timeout: float = 2.0,
        connect_timeout: float = 1.0,
        **options: Any,
    ) -> RedisStore:
        """``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS) or
        ``redis+cluster://[[user]:password@]host:port,host:port`` (``rediss+cluster`` for TLS)."""
        common: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "retry": Retry(NoBackoff(), 1),  # the flusher retries, with backoff
        }
        scheme = url.partition("://")[0].lower()
        try:
            if scheme in ("redis+cluster", "rediss+cluster"):
                nodes, user, password = parse_cluster_url(url)
                client: Any = RedisCluster(
                    startup_nodes=[ClusterNode(host, port) for host, port in nodes],
                    username=user,
                    password=password,
                    ssl=scheme == "rediss+cluster",
                    **common,
                )
                address = ",".join(f"{host}:{port}" for host, port in nodes)
            else:
                client = Redis.from_url(url, **common)
                kw = client.connection_pool.connection_kwargs
                address = f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
        except (ValueError, rx.RedisError) as exc:
            raise StorageError(f"bad redis URL {_redact(url)!r}: {exc}") from exc
        return cls(
            client,
            cluster=scheme.endswith("cluster"),
            address=address,
            durability=durability,
            clock=clock,
            **options,
        )

    # --- statistics -------------------------------------------------------------------------

    @property
    def lost(self) -> int:
        """Unawaited (ASYNC) writes given up because Redis was away too long, or refused."""
        return self._flusher.lost

    @property
    def backlog(self) -> int:
        return self._flusher.unawaited

    @property
    def batches(self) -> tuple[int, int]:
        return self._flusher.flushes, self._flusher.commands

    @property
    def flushes(self) -> int:
        return self._flusher.flushes

    @property
    def commands(self) -> int:
        return self._flusher.commands

    # --- submitting -------------------------------------------------------------------------

    def _future(self) -> asyncio.Future[Any]:
        loop = self._loop = running_loop(self._loop)
        return loop.create_future()

    async def _call(self, commands: Sequence[Command], finish: Any, *, write: bool) -> Any:
        fut = self._future()
        self._flusher.submit(Op(commands, finish, fut, write))
        return await fut

    async def _calls(self, commands: list[Command], finish: Any) -> list[Any]:
        """Writes answering per command: one op per ``max_batch`` commands, all in flight at
        once, ``finish`` making each op's list of answers; the answers in command order."""
        chunks = await asyncio.gather(
            *(
                self._call(commands[i : i + self._bulk], finish, write=True)
                for i in range(0, len(commands), self._bulk)
            )
        )
        return [answer for chunk in chunks for answer in chunk]

    async def _write(self, commands: Sequence[Command]) -> None:
        """A write that returns nothing: queued only (ASYNC, buffer not full) or awaited."""
        if self._async and self._flusher.unawaited < self._max_pending:
            self._flusher.submit(Op(commands, self._check, None, True))
        else:
            await self._call(commands, self._check, write=True)

    def _check(self, replies: list[Any]) -> None:
        for reply in replies:
            reply_error(self._name, reply)

    def _now_ms(self) -> float:
        return self._clock() * 1000

    def _expiry_ms(self, ttl: float | None) -> int | None:
        check_ttl(ttl)
        return None if ttl is None else codec.expiry_ms(self._clock() + ttl)

    def _set_command(self, key: str, value: bytes, expires: int | None) -> Command:
        raw = codec.pack(as_bytes(value), expires)
        k = codec.encode_key(key)
        return ("SET", k, raw) if expires is None else ("SET", k, raw, "PXAT", expires)

    # --- plain values -----------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        now = self._now_ms()

        def finish(replies: list[Any]) -> bytes | None:
            if reply_error(self._name, replies[0], wrongtype_ok=True):
                return None
            return codec.live(replies[0], now)

        value: bytes | None = await self._call(
            [("GET", codec.encode_key(key))], finish, write=False
        )
        return value

    async def get_entry(self, key: str) -> FieldEntry | None:
        now = self._now_ms()

        def finish(replies: list[Any]) -> FieldEntry | None:
            if reply_error(self._name, replies[0], wrongtype_ok=True) or replies[0] is None:
                return None
            return codec.remaining(replies[0], now)

        entry: FieldEntry | None = await self._call(
            [("GET", codec.encode_key(key))], finish, write=False
        )
        return entry

    def _mget_commands(self, keys: Sequence[bytes]) -> list[Command]:
        """MGETs covering ``keys`` in order: chunked, and per hash slot on a cluster."""
        if not self._cluster:
            groups: Iterable[list[bytes]] = [list(keys)]
        else:
            by_slot: dict[int, list[bytes]] = defaultdict(list)
            for k in keys:
                by_slot[key_slot(k)].append(k)
            groups = by_slot.values()
        return [
            ("MGET", *group[i : i + _MGET_CHUNK])
            for group in groups
            for i in range(0, len(group), _MGET_CHUNK)
        ]

    async def _mget_raw(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        unique = list(dict.fromkeys(keys))
        commands = self._mget_commands(unique)

        def finish(replies: list[Any]) -> dict[bytes, bytes]:
            found: dict[bytes, bytes] = {}
            for command, reply in zip(commands, replies, strict=True):
                reply_error(self._name, reply)
                found.update((k, v) for k, v in zip(command[1:], reply, strict=True) if v)
            return found

        return dict(await self._call(commands, finish, write=False))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        encoded = [codec.encode_key(key) for key in keys]
        now = self._now_ms()
        found = await self._mget_raw(encoded)
        return [codec.live(found.get(k), now) for k in encoded]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._write([self._set_command(key, value, self._expiry_ms(ttl))])

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """One script (``SET_IF_ABSENT``): atomic on the server. A write retried after a lost
        reply may answer False for a value it did write (it then just expires)."""
        expires = self._expiry_ms(ttl)
        raw = codec.pack(as_bytes(value), expires)
        now = int(self._now_ms())
        command = SET_IF_ABSENT.command(codec.encode_key(key), (raw, now, expires or ""))

        def finish(replies: list[Any]) -> bool:
            reply_error(self._name, replies[0])
            return bool(replies[0])

        return bool(await self._call([command], finish, write=True))

    async def write_many(self, writes: Sequence[Write]) -> None:
        """Applied in order, not atomically (a pipeline, not a transaction)."""
        commands = self._plain_commands(writes)
        if commands:
            await self._write(commands)

    def _plain_commands(self, writes: Sequence[Write]) -> list[Command]:
        return [
            ("DEL", codec.encode_key(w.key))
            if w.value is None
            else self._set_command(w.key, w.value, self._expiry_ms(w.ttl))
            for w in writes
        ]

    async def swap_many(self, writes: Sequence[Write]) -> list[bytes | None]:
        """Each write's read and write of its key in one native command, ``SET … GET``
        (``GETDEL`` for a delete), in pipelines of at most ``max_batch`` commands: atomic per
        key, not across keys. A key holding a field map answers a store error."""
        commands: list[Command] = [
            ("GETDEL", codec.encode_key(w.key))
            if w.value is None
            else (*self._set_command(w.key, w.value, self._expiry_ms(w.ttl)), "GET")
            for w in writes
        ]
        now = self._now_ms()

        def finish(replies: list[Any]) -> list[bytes | None]:
            for reply in replies:
                reply_error(self._name, reply)
            return [codec.live(reply, now) for reply in replies]

        held: list[bytes | None] = await self._calls(commands, finish)
        return held

    async def write_together(
        self, writes: Sequence[Write], field_writes: Sequence[FieldWrite]
    ) -> None:
        """One op (one pipeline) when it fits one: the plain writes, then one HSET script
        per map key (as ``hset_many``); not atomic."""
        commands = self._plain_commands(writes) + self._hset_commands(field_writes)
        if len(commands) <= self._bulk:
            if commands:
                await self._write(commands)
            return
        await self.write_many(writes)
        await self.hset_many(field_writes)

    async def swap_together(
        self,
        writes: Sequence[Write],
        field_writes: Sequence[FieldWrite],
        read_after: Sequence[str] = (),
        also: Sequence[FieldWrite] = (),
    ) -> list[dict[str, bytes]]:
        """One pipeline when it fits one: the plain writes, one ``HSWAP_EXPIRING`` script per
        map key (as ``hswap_many``), ``also``'s HSET scripts (as ``hset_many``), then an
        ``HGETALL`` per key of ``read_after``; not atomic (each script is)."""
        commands = self._plain_commands(writes)
        names: list[list[str]] = []
        for key, mapping, ttl in field_writes:
            commands.append(self._hswap_command(key, mapping, self._expiry_ms(ttl)))
            names.append(list(mapping))
        plain, swapped = len(writes), len(field_writes)
        if also:
            commands += self._hset_commands(also)
        written = len(commands)
        commands += [("HGETALL", codec.encode_key(key)) for key in read_after]
        if len(commands) > self._bulk:
            return await super().swap_together(writes, field_writes, read_after, also)
        now = self._now_ms()
        finish_map = self._hgetall_finish(now)

        def finish(replies: list[Any]) -> list[dict[str, bytes]]:
            for reply in replies[:written]:
                reply_error(self._name, reply)
            held = [
                {
                    name: value
                    for name, raw in zip(fields, reply, strict=True)
                    if (value := codec.live(raw, now)) is not None
                }
                for fields, reply in zip(names, replies[plain : plain + swapped], strict=True)
            ]
            return held + [
                {field: value for field, (value, _) in finish_map([reply]).items()}
                for reply in replies[written:]
            ]

        answer: list[dict[str, bytes]] = await self._call(commands, finish, write=True)
        return answer

    async def delete(self, key: str) -> bool:
        k = codec.encode_key(key)
        now = self._now_ms()

        def finish(replies: list[Any]) -> bool:
            value, fields, deleted = replies
            reply_error(self._name, deleted)
            if not reply_error(self._name, value, wrongtype_ok=True) and value is not None:
                return codec.live(value, now) is not None
            if reply_error(self._name, fields, wrongtype_ok=True):
                return False
            return any(codec.live(raw, now) is not None for raw in fields)

        commands = [("GET", k), ("HVALS", k), ("DEL", k)]
        return bool(await self._call(commands, finish, write=True))

    # --- field maps -------------------------------------------------------------------------

    async def hget(self, key: str, field: str) -> bytes | None:
        now = self._now_ms()

        def finish(replies: list[Any]) -> bytes | None:
            if reply_error(self._name, replies[0], wrongtype_ok=True):
                return None
            return codec.live(replies[0], now)

        command = ("HGET", codec.encode_key(key), codec.encode_key(field))
        value: bytes | None = await self._call([command], finish, write=False)
        return value

    async def hget_many(self, pairs: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """One op of one ``HGET`` each: one pipeline flush (per node) for them all."""
        if not pairs:
            return []
        now = self._now_ms()
        name, live, encode = self._name, codec.live, codec.encode_key

        def finish(replies: list[Any]) -> list[bytes | None]:
            return [
                None if reply_error(name, reply, wrongtype_ok=True) else live(reply, now)
                for reply in replies
            ]

        commands = [("HGET", encode(key), encode(field)) for key, field in pairs]
        values: list[bytes | None] = await self._call(commands, finish, write=False)
        return values

    def _hgetall_finish(self, now: float) -> Any:
        def finish(replies: list[Any]) -> dict[str, FieldEntry]:
            if reply_error(self._name, replies[0], wrongtype_ok=True):
                return {}
            out: dict[str, FieldEntry] = {}
            for field, raw in codec.field_pairs(replies[0]):
                entry = codec.remaining(raw, now)
                if entry is not None:
                    out[codec.decode_key(field)] = entry
            return out

        return finish

    async def hgetall(self, key: str) -> dict[str, bytes]:
        finish = self._hgetall_finish(self._now_ms())
        command = ("HGETALL", codec.encode_key(key))
        entries: dict[str, FieldEntry] = await self._call([command], finish, write=False)
        return {field: value for field, (value, _) in entries.items()}

    async def hgetall_entries(self, key: str) -> dict[str, FieldEntry]:
        finish = self._hgetall_finish(self._now_ms())
        command = ("HGETALL", codec.encode_key(key))
        entries: dict[str, FieldEntry] = await self._call([command], finish, write=False)
        return entries

    async def hset(
        self, key: str, mapping: Mapping[str, bytes], *, ttl: float | None = None
    ) -> None:
        """Fields carry their expiry; the key expires with its last field (one script)."""
        expires = self._expiry_ms(ttl)
        if not mapping:
            return
        await self._write([_hset_command(key, _field_args(mapping, expires), expires)])

    async def hset_many(self, items: Sequence[FieldWrite]) -> None:
        """One op (one pipeline): per key, one HSET of all its fields, whatever their TTLs
        (each value carries its own expiry), and the key's expiry set once, to the farthest."""
        commands = self._hset_commands(items)
        ops = [commands[i : i + self._bulk] for i in range(0, len(commands), self._bulk)]
        if self._async or len(ops) == 1:  # queued in order (ASYNC returns once queued)
            for op in ops:
                await self._write(op)
        elif ops:
            await asyncio.gather(*(self._write(op) for op in ops))

    def _hset_commands(self, items: Sequence[FieldWrite]) -> list[Command]:
        """``hset_many``'s commands: one HSET script per key (bounded pipelines are the
        caller's)."""
        by_key: dict[str, tuple[list[bytes], list[int | None]]] = {}
        for key, mapping, ttl in items:
            expires = self._expiry_ms(ttl)
            if not mapping:
                continue
            entry = by_key.get(key)
            if entry is None:
                entry = by_key[key] = ([], [])
            entry[0].extend(_field_args(mapping, expires))
            entry[1].append(expires)
        commands: list[Command] = []
        for key, (args, expiries) in by_key.items():
            farthest = None if None in expiries else max(e for e in expiries if e is not None)
            commands.append(_hset_command(key, args, farthest))
        return commands

    async def hswap_many(self, items: Sequence[FieldWrite]) -> list[dict[str, bytes]]:
        """Each item's read and write of its key in one step: on standalone Redis one
        ``HSWAP_EXPIRING_EACH`` script per ``KEYS_PER_SCRIPT`` items, on a cluster one
        ``HSWAP_EXPIRING`` per item; in pipelines of at most ``max_batch`` commands. What an
        item's mapping and TTL give (its expiry, its packed fields, their names) is made once
        a call for all items sharing them (the frequency checks give a second's writes one
        mapping), its numbers as the bytes the command carries."""
        keys: list[bytes] = []
        parts: list[_SwapPart] = []
        expiry_of: dict[float | None, int | None] = {}
        part_of: dict[tuple[int, int | None], _SwapPart] = {}
        for key, mapping, ttl in items:
            if ttl in expiry_of:
                expires = expiry_of[ttl]
            else:
                expires = expiry_of[ttl] = self._expiry_ms(ttl)
            part = part_of.get((id(mapping), expires))
            if part is None:
                part = part_of[(id(mapping), expires)] = _swap_part(mapping, expires)
            keys.append(codec.encode_key(key))
            parts.append(part)
        now = self._now_ms()
        if self._cluster:
            commands = [part.one_key(key) for key, part in zip(keys, parts, strict=True)]
        else:
            commands = _swap_each_commands(keys, parts)

        def finish(replies: list[Any]) -> list[Any]:
            for reply in replies:
                reply_error(self._name, reply)
            return [held for reply in replies for held in reply] if not self._cluster else replies

        live = codec.live
        answers: list[dict[str, bytes]] = []
        for part, held in zip(parts, await self._calls(commands, finish), strict=True):
            found: dict[str, bytes] = {}
            if type(held) is not list:  # HSWAP_FIELD_EACH's: the one field's raw value
                if held is not None and (value := live(held, now)) is not None:
                    found[part.names[0]] = value
            else:
                for name, raw in zip(part.names, held, strict=True):
                    if raw is not None and (value := live(raw, now)) is not None:
                        found[name] = value
            answers.append(found)
        return answers

    def _hswap_command(self, key: str, mapping: Mapping[str, Any], expires: int | None) -> Command:
        """The ``HSWAP_EXPIRING`` script of one key: its fields set, what they held answered."""
        return _swap_part(mapping, expires).one_key(codec.encode_key(key))

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, bytes]]:
        if not keys:
            return []
        finish = self._hgetall_finish(self._now_ms())

        def finish_all(replies: list[Any]) -> list[dict[str, bytes]]:
            return [
                {field: value for field, (value, _) in finish([reply]).items()} for reply in replies
            ]

        commands = [("HGETALL", codec.encode_key(key)) for key in keys]
        chunks = await asyncio.gather(
            *(
                self._call(commands[i : i + self._bulk], finish_all, write=False)
                for i in range(0, len(commands), self._bulk)
            )
        )
        return [found for chunk in chunks for found in chunk]

    async def hdel(self, key: str, fields: Sequence[str]) -> int:
        if not fields:
            return 0
        k = codec.encode_key(key)
        encoded = [codec.encode_key(field) for field in fields]
        now = self._now_ms()

        def finish(replies: list[Any]) -> int:
            values, deleted = replies
            reply_error(self._name, deleted, wrongtype_ok=True)
            if reply_error(self._name, values, wrongtype_ok=True):
                return 0
            return sum(codec.live(raw, now) is not None for raw in values)

        commands = [("HMGET", k, *encoded), ("HDEL", k, *encoded)]
        return int(await self._call(commands, finish, write=True))

    # --- scans ------------------------------------------------------------------------------

    async def _barrier(self) -> None:
        """Wait until every write queued before now has been sent (read-your-writes)."""
        await self._call([], lambda replies: None, write=False)

    async def _direct(self, *args: Any, **kwargs: Any) -> Any:
        """One command outside the flusher (scans, info), errors wrapped."""
        if self._closing is not None:
            raise StoreUnavailable(f"{self._name} store is closed")
        try:
            return await self._client.execute_command(*args, **kwargs)
        except TRANSIENT as exc:
            raise StoreUnavailable(f"{self._name} unreachable: {exc}") from exc
        except rx.RedisError as exc:
            raise StorageError(f"{self._name}: {type(exc).__name__}: {exc}") from exc

    def _primaries(self) -> list[Any]:
        return list(self._client.get_primaries()) if self._cluster else [None]

    async def _found_keys(self, prefix: str, kind: str) -> AsyncIterator[list[bytes]]:
        """Each page SCAN answers of the keys of type ``kind`` starting with ``prefix``, as it
        comes (every master in turn on a cluster), none empty."""
        await self._barrier()
        pattern = codec.glob_prefix(codec.encode_key(prefix))
        if self._cluster:
            await self._direct("PING")  # initialises the cluster client's view of its nodes
        for node in self._primaries():
            target = {} if node is None else {"target_nodes": node}
            cursor: Any = 0
            while True:
                cursor, page = await self._direct(
                    "SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT, "TYPE", kind, **target
                )
                if page:
                    yield page
                if isinstance(cursor, dict):  # a cluster answers {node name: cursor}
                    cursor = next(iter(cursor.values()))
                if int(cursor) == 0:
                    break

    async def _scan_keys(
        self, prefix: str, kind: str, batch: int, *, in_order: bool = True
    ) -> AsyncIterator[list[bytes]]:
        """Every key of type ``kind`` starting with ``prefix`` (SCAN every master, first), in
        key order, ``batch`` at a time.

        Key order needs them all: memory grows with the number of matching keys. They are
        not sorted at once, which would hold the event loop for as long (some 250 ms for
        half a million keys, ``bench/scan_pause.py``): each SCAN page is sorted as it comes,
        and the pages are merged while the caller reads (``heapq.merge``), a key SCAN
        answered twice (Redis may, while it rehashes) given once.

        ``in_order=False``: the keys as SCAN finds them, each page handed on as it comes:
        memory does not grow with the scan, and a key SCAN answers twice comes twice.
        """
        chunk: list[bytes] = []
        if not in_order:
            async for page in self._found_keys(prefix, kind):
                chunk += page
                while len(chunk) >= batch:
                    yield chunk[:batch]
                    del chunk[:batch]
            if chunk:
                yield chunk
            return
        runs = [sorted(page) async for page in self._found_keys(prefix, kind)]
        last: bytes | None = None
        for key in heapq.merge(*runs):
            if key == last:
                continue
            last = key
            chunk.append(key)
            if len(chunk) == batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def scan(self, prefix: str, *, batch: int = 1000) -> AsyncIterator[tuple[str, bytes]]:
        return self._scan_plain(prefix, batch, with_ttl=False)

    def scan_ttl(
        self, prefix: str, *, batch: int = 1000, in_order: bool = True
    ) -> AsyncIterator[tuple[str, bytes, float | None]]:
        return self._scan_plain(prefix, batch, with_ttl=True, in_order=in_order)

    async def _raw_pages(
        self, prefix: str, batch: int, *, in_order: bool = True
    ) -> AsyncIterator[tuple[list[bytes], dict[bytes, bytes], float]]:
        """The plain keys under ``prefix``, ``batch`` at a time: each chunk of raw keys, what
        one ``MGET`` found of them and when it read them."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        async for chunk in self._scan_keys(prefix, "string", batch, in_order=in_order):
            now = self._now_ms()
            yield chunk, await self._mget_raw(chunk), now

    async def _scan_plain(
        self, prefix: str, batch: int, *, with_ttl: bool, in_order: bool = True
    ) -> AsyncIterator[Any]:
        async for chunk, found, now in self._raw_pages(prefix, batch, in_order=in_order):
            for k in chunk:
                raw = found.get(k)
                entry = None if raw is None else codec.remaining(raw, now)
                if entry is not None:
                    key = codec.decode_key(k)
                    yield (key, *entry) if with_ttl else (key, entry[0])

    async def scan_pages(
        self, prefix: str, *, batch: int = 1000, in_order: bool = True
    ) -> AsyncIterator[Page]:
        """One ``MGET`` per page (per node on a cluster), its live values unpacked."""
        async for chunk, found, now in self._raw_pages(prefix, batch, in_order=in_order):
            page: list[tuple[str, bytes]] = []
            for k in chunk:
                raw = found.get(k)
                value = None if raw is None else codec.live(raw, now)
                if value is not None:
                    page.append((codec.decode_key(k), value))
            if page:
                yield page

    async def scan_maps(
        self, prefix: str, *, batch: int = 100, in_order: bool = True
    ) -> AsyncIterator[tuple[str, dict[str, FieldEntry]]]:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        async for chunk in self._scan_keys(prefix, "hash", batch, in_order=in_order):
            finish = self._hgetall_finish(self._now_ms())
            maps = await asyncio.gather(
                *(self._call([("HGETALL", k)], finish, write=False) for k in chunk)
            )
            for k, fields in zip(chunk, maps, strict=True):
                if fields:
                    yield codec.decode_key(k), fields

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self.ping()

    async def ping(self) -> None:
        try:
            await asyncio.wait_for(self._direct("PING"), self._flusher.retry_for)
        except StoreUnavailable as exc:
            raise StoreUnavailable(f"cannot reach redis at {self.address}: {exc}") from exc
        except TimeoutError as exc:
            raise StoreUnavailable(f"cannot reach redis at {self.address}: timeout") from exc

    async def info(self) -> dict[str, str]:
        out = {"backend": "redis cluster" if self._cluster else "redis", "address": self.address}
        for node in self._primaries():
            target = {} if node is None else {"target_nodes": node}
            info = await self._direct("INFO", **target)
            tag = "" if node is None else f"{node.host}:{node.port} "
            for name in ("redis_version", "used_memory_human", "aof_enabled", "role"):
                out[tag + name] = str(info.get(name, "?"))
            out[tag + "keys"] = str(await self._direct("DBSIZE", **target))
        out["lost_writes"] = str(self.lost)
        return out

    async def close(self) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        try:
            await self._flusher.stop()
        finally:
            await self._client.aclose()


def _hset_command(key: str, args: list[bytes], expires: int | None) -> Command:
    """One script: HSET, then the map's expiry moved out to ``expires`` if it is earlier (a
    field kept forever keeps the map: the farthest expiry there is)."""
    return HSET_EXPIRING.command(codec.encode_key(key), (_farthest(expires), *args))


@dataclass(frozen=True, slots=True)
class _SwapPart:
    """What ``hswap_many`` sends and reads for items sharing one mapping and expiry."""

    names: list[str]
    args: list[bytes]
    """``HSWAP_EXPIRING_EACH``'s arguments for one key: its expiry, its number of fields,
    then its field, value…"""

    def one_key(self, key: bytes) -> Command:
        """The ``HSWAP_EXPIRING`` script of ``key`` alone (its arguments without the number)."""
        return HSWAP_EXPIRING.command(key, [self.args[0], *self.args[2:]])


def _swap_each_commands(keys: Sequence[bytes], parts: Sequence[_SwapPart]) -> list[Command]:
    """Standalone ``hswap_many``'s scripts, at most ``KEYS_PER_SCRIPT`` keys each, in the
    items' order: a run of items sharing one part of one field (one mapping and expiry, as a
    second's frequency checks) as one ``HSWAP_FIELD_EACH`` (the field and value sent once,
    one flat answer), the items between such runs as ``HSWAP_EXPIRING_EACH`` (each key's
    arguments, a list a key)."""
    commands: list[Command] = []
    start, end = 0, len(keys)
    while start < end:
        stop = min(start + KEYS_PER_SCRIPT, end)
        part, run = parts[start], start + 1
        while run < stop and parts[run] is part:
            run += 1
        if len(part.names) == 1 and run - start > 1:
            args = (part.args[0], *part.args[2:])  # the expiry, the field, the value
            commands.append(HSWAP_FIELD_EACH.command_keys(keys[start:run], args))
        else:
            run = start + 1
            while run < stop and not _shared_field_at(parts, run, stop):
                run += 1
            args = tuple(arg for each in parts[start:run] for arg in each.args)
            commands.append(HSWAP_EXPIRING_EACH.command_keys(keys[start:run], args))
        start = run
    return commands


def _shared_field_at(parts: Sequence[_SwapPart], at: int, stop: int) -> bool:
    """Whether a run of items sharing one part of one field starts at ``at``."""
    return len(parts[at].names) == 1 and at + 1 < stop and parts[at + 1] is parts[at]


def _swap_part(mapping: Mapping[str, Any], expires: int | None) -> _SwapPart:
    head = [str(_farthest(expires)).encode(), str(len(mapping)).encode()]
    return _SwapPart(list(mapping), head + _field_args(mapping, expires))


def _farthest(expires: int | None) -> int:
    """A map's expiry for scripts that only move it out: a field kept forever keeps the map."""
    return codec.FAR_FUTURE_MS if expires is None else expires


def _field_args(mapping: Mapping[str, Any], expires: int | None) -> list[bytes]:
    """A map's fields as script arguments: each name, then its value packed with ``expires``."""
    args: list[bytes] = []
    for field, value in mapping.items():
        args += (codec.encode_key(field), codec.pack(as_bytes(value), expires))
    return args


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """``redis+cluster://[user:password@]h1:p1,h2:p2[/0]`` → (nodes, user, password)."""
    _, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    if path.strip("/") not in ("", "0") or "?" in url or "#" in url:
        raise ValueError("a cluster URL has no database, query or fragment (db 0 only)")
    userinfo, _, hosts = netloc.rpartition("@")
    user, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        parts = urlsplit(f"//{item}")
        if not parts.hostname:
            raise ValueError(f"no host in {item!r}")
        nodes.append((parts.hostname, parts.port or 6379))
    return nodes, unquote(user) or None, unquote(password) or None


def _redact(url: str) -> str:
    """The URL without its password."""
    scheme, _, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        netloc = userinfo.partition(":")[0] + ":***@" + hosts
    return f"{scheme}://{netloc}{slash}{tail}"
