"""A minimal standalone RSGI app doing the buyer's ``GET /match`` real work, and nothing else: the
reference ``bench/match_reference.py`` measures cookiematch's ``/match`` against (what is
reachable on this server stack with a durable SQLite write). No cookiematch code; granian
serves ``minimal_match:app``.

Per request: ``google_gid`` and ``google_cver`` read from the query, the buyer cookie's uid
(22 characters of unpadded base64url), both entries read (``bm:{nid}:g:{gid}`` and
``bm:{nid}:u:{uid}``, one ``IN`` query), both written (the ``keys`` layout's values, with
their expiry) in a group commit under ``synchronous=FULL`` in WAL mode, and only then the 1x1
GIF with the refreshed cookie.

    MINIMAL_DB=/path/store.db MINIMAL_MODE=threads|loop|loop_read|log granian \\
        --interface rsgi minimal_match:app

``threads``: the read handed to a reader thread, the write to a writer thread that commits
everything queued in one statement, futures settled with one ``call_soon_threadsafe`` per
batch (the store engine's shape). ``loop_read``: the read on the event loop's own connection,
the writer thread as before. ``loop``: no thread: the read on the loop, and the writes of one
loop iteration committed on the loop itself by a callback the first of them schedules.
``log``: ``threads``, the table written under ``synchronous=NORMAL`` and each batch's rows
appended to a log file and ``fdatasync``'d before the answer (an append log for durability).
"""

from __future__ import annotations

import asyncio
import base64
import os
import queue
import sqlite3
import struct
import threading
import time
from typing import Any
from urllib.parse import unquote

NID = "finest-dsp"
TTL = 28 * 86400
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
COOKIE = "buyer_uid="
_BY_GID = struct.Struct(">B16sII")
_BY_UID = struct.Struct(">BII")
READ = "SELECT key, value FROM kv WHERE key IN (?, ?) AND (expires_at IS NULL OR expires_at > ?)"
WRITE_HEAD = "INSERT OR REPLACE INTO kv VALUES "
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL,"
    " expires_at REAL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL",
)
Rows = list[Any]


def connect(writer: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(os.environ["MINIMAL_DB"], isolation_level=None, check_same_thread=False)
    if writer:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        for statement in SCHEMA:
            conn.execute(statement)
    return conn


def commit(conn: sqlite3.Connection, rows: Rows) -> None:
    """All queued rows (3 values each) in one autocommit statement: one transaction."""
    conn.execute(WRITE_HEAD + ",".join(["(?,?,?)"] * (len(rows) // 3)), rows)


class Threads:
    """Reads through a reader thread, writes through a group-committing writer thread."""

    def __init__(self, read_on_loop: bool, log: bool = False) -> None:
        self.wconn = connect(True)
        self.log = None
        if log:
            self.wconn.execute("PRAGMA synchronous = NORMAL")
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            self.log = os.open(os.environ["MINIMAL_DB"] + "-log", flags)
        self.rconn = connect(False)
        self.reads: queue.SimpleQueue[tuple[tuple[Any, ...], asyncio.Future[Any]]] = (
            queue.SimpleQueue()
        )
        self.writes: queue.SimpleQueue[tuple[Rows, asyncio.Future[None]]] = queue.SimpleQueue()
        self.read_on_loop = read_on_loop
        threading.Thread(target=self.write_loop, daemon=True).start()
        if not read_on_loop:
            threading.Thread(target=self.read_loop, daemon=True).start()

    def read_loop(self) -> None:
        while True:
            params, fut = self.reads.get()
            rows = self.rconn.execute(READ, params).fetchall()
            fut.get_loop().call_soon_threadsafe(fut.set_result, rows)

    def write_loop(self) -> None:
        while True:
            batch = [self.writes.get()]
            while True:
                try:
                    batch.append(self.writes.get_nowait())
                except queue.Empty:
                    break
            rows = [value for rows, _ in batch for value in rows]
            commit(self.wconn, rows)
            if self.log is not None:
                os.write(self.log, repr(rows).encode())
                os.fdatasync(self.log)
            loop = batch[0][1].get_loop()
            loop.call_soon_threadsafe(_settle, [fut for _, fut in batch])

    async def read(self, params: tuple[Any, ...]) -> list[Any]:
        if self.read_on_loop:
            return self.rconn.execute(READ, params).fetchall()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.reads.put((params, fut))
        return await fut

    def write(self, rows: Rows) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writes.put((rows, fut))
        return fut


def _settle(futures: list[asyncio.Future[None]]) -> None:
    for fut in futures:
        fut.set_result(None)


class OnLoop:
    """Reads and group commits on the event loop's thread: the writes of one loop iteration
    committed by one callback."""

    def __init__(self) -> None:
        self.wconn = connect(True)
        self.rconn = connect(False)
        self.rows: Rows = []
        self.waiting: list[asyncio.Future[None]] = []

    async def read(self, params: tuple[Any, ...]) -> list[Any]:
        return self.rconn.execute(READ, params).fetchall()

    def write(self, rows: Rows) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not self.waiting:
            loop.call_soon(self.flush)
        self.rows += rows
        self.waiting.append(fut)
        return fut

    def flush(self) -> None:
        rows, waiting = self.rows, self.waiting
        self.rows, self.waiting = [], []
        commit(self.wconn, rows)
        _settle(waiting)


store: Threads | OnLoop | None = None


def query_value(query: str, name: str) -> str | None:
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == name:
            return unquote(value)
    return None


def cookie_uid(header: str | None) -> bytes | None:
    if header is None:
        return None
    for part in header.split(";"):
        part = part.strip()
        if part.startswith(COOKIE):
            try:
                raw = base64.urlsafe_b64decode(part[len(COOKIE) :] + "==")
            except ValueError:
                return None
            return raw if len(raw) == 16 else None
    return None


async def app(scope: Any, proto: Any) -> None:
    global store
    if store is None:
        mode = os.environ.get("MINIMAL_MODE", "threads")
        store = OnLoop() if mode == "loop" else Threads(mode == "loop_read", mode == "log")
    query = scope.query_string
    gid = query_value(query, "google_gid")
    cver = query_value(query, "google_cver")
    uid = cookie_uid(scope.headers.get("cookie"))
    if not gid or not cver or not cver.isdigit() or uid is None:
        proto.response_bytes(200, [("content-type", "image/gif")], GIF)  # wait_http's probe
        return
    uid_text = base64.urlsafe_b64encode(uid).rstrip(b"=").decode()
    g_key, u_key = f"bm:{NID}:g:{gid}", f"bm:{NID}:u:{uid_text}"
    now = time.time()
    await store.read((g_key, u_key, now))  # nothing to replace for a new pairing here
    t = int(now)
    await store.write(
        [
            g_key, _BY_GID.pack(1, uid, int(cver), t), now + TTL,
            u_key, _BY_UID.pack(1, int(cver), t) + gid.encode(), now + TTL,
        ]
    )  # fmt: skip
    cookie = f"buyer_uid={uid_text}; Max-Age=33696000; Path=/; Secure; HttpOnly; SameSite=None"
    proto.response_bytes(
        200,
        [("content-type", "image/gif"), ("cache-control", "no-store"), ("set-cookie", cookie)],
        GIF,
    )
