"""How one flush reaches Redis: raw RESP out, hiredis in; redis-py for everything else.

    flush ──▶ fast path: per node, the commands packed as RESP bytes (``hiredis.pack_command``)
          │   in one write on a connection of redis-py's, the replies parsed by that connection's
          │   ``hiredis.Reader`` in one loop: no per-command Python objects, no callbacks
          └─▶ redis-py's pipeline (``pipeline(transaction=False)``), the one fallback, for:
              - what the fast path did not run: a reply saying "not here, not now" (``MOVED``,
                ``ASK``, ``TRYAGAIN``) or ``NOSCRIPT``, with every later command of the flush
                on the same key (so a key's commands keep their order);
              - the whole next flush after a connection failure or a reply of the kind that
                says the topology moved (cluster down, loading, read-only replica): redis-py
                refreshes its view of the cluster, reconnects, follows redirections;
              - every flush when the connection does not parse with hiredis, and a cluster's
                flush before redis-py has loaded its slot map.

redis-py keeps the topology (its ``nodes_manager``), the connections (connect, AUTH, TLS,
``SELECT``, ``READONLY``) and the recovery; the fast path only borrows one connection per node
per flush. Replies are raw RESP2 or RESP3, whichever the connection speaks (an ``HGETALL`` is a
flat list or a map: ``redis_codec.field_pairs``);
error replies are redis-py's exception classes, as its pipeline returns them. Scripts go to
redis-py as ``EVAL`` (``redis_scripts.as_eval``), so ``NOSCRIPT`` never comes back from it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import hiredis
from redis import exceptions as rx
from redis._parsers import _AsyncHiredisParser
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.crc import key_slot

from cookiematch.deadlines import Deadlines
from cookiematch.storage.redis_scripts import Command, as_eval

# Errors that say "not now" rather than "never": the flusher retries writes and fails reads
# with StoreUnavailable; after one, the next flush goes through redis-py (it recovers).
TRANSIENT: tuple[type[BaseException], ...] = (
    rx.ConnectionError,  # includes BusyLoadingError
    rx.TimeoutError,
    rx.ClusterDownError,
    rx.TryAgainError,
    rx.MovedError,
    rx.AskError,
    rx.ReadOnlyError,
    rx.MasterDownError,
    rx.ClusterError,
    rx.RedisClusterException,
    OSError,
    asyncio.TimeoutError,
)
NOT_RUN = (rx.AskError, rx.TryAgainError, rx.NoScriptError)  # MOVED is an AskError
"""Error replies of commands Redis did not run: sent again through redis-py."""


class FastPathUnavailable(Exception):
    """This flush cannot take the fast path (nothing was sent)."""


class Wire:
    """Sends a flush's commands, in order, and returns one reply (or error) per command."""

    def __init__(self, client: Any, *, cluster: bool) -> None:
        self._client = client
        self._cluster = cluster
        self._held: Any = None  # standalone: the connection the fast path keeps
        self.via_client_next = False  # set after trouble: the next flush through redis-py
        self.fast = True  # False for good once a connection does not parse with hiredis
        self.fast_flushes = 0  # flushes (or parts) that took the fast path (statistics)
        self._limits = Deadlines()  # each exchange's socket timeout, one loop timer at a time

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Replies in order; raises what redis-py's pipeline raises when the flush as a
        whole fails (a connection-level error: the caller retries its writes)."""
        if not commands:
            return []
        if self.via_client_next or not self.fast:
            self.via_client_next = False
            return await self.via_client(commands)
        try:
            replies = await self._direct(commands)
        except FastPathUnavailable:
            return await self.via_client(commands)
        except BaseException:
            self.via_client_next = True
            raise
        self.fast_flushes += 1
        failed = (
            [i for i, reply in enumerate(replies) if isinstance(reply, rx.RedisError)]
            if any_of(replies, _ERROR)
            else []
        )
        if failed:
            self.via_client_next = any(isinstance(replies[i], TRANSIENT) for i in failed)
            again = _not_run(commands, replies, failed[0])
            if again:
                redone = await self.via_client([commands[i] for i in again])
                for i, reply in zip(again, redone, strict=True):
                    replies[i] = reply
        return replies

    async def via_client(self, commands: Sequence[Command]) -> list[Any]:
        """The fallback: redis-py's pipeline, error replies returned as exceptions."""
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*as_eval(command))
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def close(self) -> None:
        """Give the held connection back to redis-py's pool (before the client closes)."""
        held, self._held = self._held, None
        if held is not None:
            await self._client.connection_pool.release(held)

    # --- the fast path ------------------------------------------------------------------------

    async def _direct(self, commands: Sequence[Command]) -> list[Any]:
        if not self._cluster:
            if self._held is None:
                self._held = await self._client.connection_pool.get_connection()
            return await self._exchange(self._held, commands)
        manager = self._client.nodes_manager
        if manager.default_node is None:  # redis-py has not (re)loaded the slot map
            raise FastPathUnavailable
        by_node: dict[Any, list[int]] = defaultdict(list)
        try:
            for i, command in enumerate(commands):
                by_node[manager.get_node_from_slot(key_slot(_key(command)))].append(i)
        except (KeyError, rx.RedisError) as exc:
            raise FastPathUnavailable from exc
        if len(by_node) == 1:
            node = next(iter(by_node))
            return await self._on_node(node, commands)
        parts = list(by_node.items())
        answers = await asyncio.gather(
            *(self._on_node(node, [commands[i] for i in positions]) for node, positions in parts),
            return_exceptions=True,
        )
        failure = next((a for a in answers if isinstance(a, BaseException)), None)
        if failure is not None:
            raise failure
        replies: list[Any] = [None] * len(commands)
        for (_, positions), answer in zip(parts, answers, strict=True):
            for i, reply in zip(positions, answer, strict=True):  # type: ignore[arg-type]
                replies[i] = reply
        return replies

    async def _on_node(self, node: Any, commands: Sequence[Command]) -> list[Any]:
        connection = node.acquire_connection()
        try:
            return await self._exchange(connection, commands)
        finally:
            node.release(connection)

    async def _exchange(self, connection: Any, commands: Sequence[Command]) -> list[Any]:
        """One write of the packed commands, then their replies, within the connection's
        socket timeout (``Deadlines.run``: ``asyncio.timeout``'s semantics, every flush's limit
        behind one loop timer; none for a client built without one); a connection whose
        state is unknown after a failure is disconnected (redis-py reconnects it on next
        use)."""
        data = b"".join([hiredis.pack_command(command) for command in commands])
        timeout = connection.socket_timeout
        exchange = self._send(connection, data, len(commands))
        try:
            if timeout is None:
                return await exchange
            return await self._limits.run(exchange, timeout)
        except FastPathUnavailable:
            raise
        except BaseException:
            await connection.disconnect(nowait=True)
            raise

    async def _send(self, connection: Any, data: bytes, count: int) -> list[Any]:
        if not connection.is_connected:
            await connection.connect()
        parser = connection._parser
        if type(parser) is not _AsyncHiredisParser:
            self.fast = False  # (nothing sent)
            raise FastPathUnavailable
        await _write(connection, data)
        return await _read(parser, count)


_ERROR = (rx.RedisError,)


def any_of(replies: Sequence[Any], kinds: tuple[type[BaseException], ...]) -> bool:
    """Whether any of ``replies`` is an instance of ``kinds``: each distinct type looked at
    once (``set(map(type, …))`` runs in C), not each reply; in a pipeline of 256 replies
    about 5 µs instead of 25 for one ``isinstance`` a reply."""
    return any(issubclass(kind, kinds) for kind in set(map(type, replies)))


async def _write(connection: Any, data: bytes) -> None:
    """``data`` written to the connection's stream, waiting only while the socket is backed
    up. redis-py's ``send_packed_command`` does the same under ``asyncio.wait_for``, which on
    Python 3.11 runs it as a task of its own: a task and two turns of the loop a flush (the
    flush's timeout covers the write here). A failed write is a ``ConnectionError``, as there."""
    writer = connection._writer
    if writer is None:  # disconnected meanwhile (a cluster's node dropped by redis-py)
        raise rx.ConnectionError("Error while writing to socket: not connected")
    try:
        writer.write(data)
        await writer.drain()
    except (OSError, RuntimeError) as exc:  # (uvloop: RuntimeError on a closed transport)
        raise rx.ConnectionError(f"Error while writing to socket: {exc!r}") from exc


async def _read(parser: Any, count: int) -> list[Any]:
    """``count`` replies from the parser's hiredis reader, reading the socket as needed; a
    RESP3 push message in between goes to redis-py's handler, as its own reads do."""
    gets = parser._reader.gets
    replies: list[Any] = []
    append = replies.append
    while True:
        reply = gets()
        while reply is not NOT_ENOUGH_DATA:
            if type(reply) is hiredis.PushNotification:
                await parser.handle_push_response(reply)
            else:
                append(reply)
                if len(replies) == count:
                    return replies
            reply = gets()
        await parser.read_from_socket()


def _key(command: Command) -> Any:
    """The key a command routes by (the first; a flush's MGET is within one slot)."""
    return command[3] if command[0] in ("EVALSHA", "EVAL") else command[1]


def _keys(command: Command) -> Sequence[Any]:
    if command[0] in ("EVALSHA", "EVAL"):
        return command[3 : 3 + int(command[2])]
    return command[1:] if command[0] == "MGET" else command[1:2]


def _not_run(commands: Sequence[Command], replies: list[Any], first: int) -> list[int]:
    """Positions to send again, from ``first`` (the first error reply) on: commands Redis did
    not run, and every later command on one of their keys (which ran out of order)."""
    again: list[int] = []
    keys: set[Any] = set()
    for i in range(first, len(replies)):
        if isinstance(replies[i], NOT_RUN) or (keys and not keys.isdisjoint(_keys(commands[i]))):
            again.append(i)
            keys.update(_keys(commands[i]))
    return again
