"""A minimal standalone RSGI app doing the DMP's partner callback's real work, and nothing else:
the reference ``bench/match_reference.py --endpoint callback`` measures cookiematch's
``/callback/<partner>`` against (what is reachable on this server stack with the same durable
SQLite writes). No cookiematch code; granian serves ``minimal_callback:app``.

Per request: the partner from the path, ``uid`` and ``c`` from the query, the DMP cookie's ID
(22 characters of unpadded base64url); then, in one transaction of a group commit under
``synchronous=FULL`` in WAL mode:

- the browser's partner map read, the partner's field (its uid and the time) merged in and the
  map written back, the partner uid it replaces answered;
- the partner uid's reverse entry (the DMP ID and the time) written;
- the browser marked changed in the map of its slice of the minute (read, merged, written);
- the map of what waits for the partner uid read;

and only then the 1x1 GIF. A writer thread commits everything queued in one transaction (one
``IN`` query for the maps, one statement for the maps, one for the reverse entries) and settles
the batch's futures with one ``call_soon_threadsafe``: the store engine's shape.

    MINIMAL_DB=/path/store.db granian --interface rsgi minimal_callback:app
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

TTL = 30 * 86400
MARK_TTL = 2 * 86400
SLICES = 16_384  # change-mark maps a minute
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
COOKIE = "dmp_id="
PIXEL = [("content-type", "image/gif"), ("cache-control", "no-store")]
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL,"
    " expires_at REAL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS fm (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL,"
    " expires_at REAL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS fm_expiry ON fm (expires_at) WHERE expires_at IS NOT NULL",
)
_FIELD = struct.Struct(">HHd")  # name length, value length, expiry
Fields = dict[str, tuple[bytes, float]]
# a callback's writes: (partner, partner uid, DMP ID, now), and its future
Queued = tuple[tuple[str, str, str, float], "asyncio.Future[tuple[bytes | None, Fields]]"]


def pack(fields: Fields) -> bytes:
    parts = []
    for name, (value, expires_at) in fields.items():
        raw = name.encode()
        parts += [_FIELD.pack(len(raw), len(value), expires_at), raw, value]
    return b"".join(parts)


def unpack(blob: bytes, now: float) -> Fields:
    fields: Fields = {}
    at = 0
    while at < len(blob):
        n, v, expires_at = _FIELD.unpack_from(blob, at)
        at += _FIELD.size
        name = blob[at : at + n].decode()
        at += n
        if expires_at > now:
            fields[name] = (blob[at : at + v], expires_at)
        at += v
    return fields


class Writer:
    """A group-committing writer thread."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(
            os.environ["MINIMAL_DB"], isolation_level=None, check_same_thread=False
        )
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        for statement in SCHEMA:
            self.conn.execute(statement)
        self.queue: queue.SimpleQueue[Queued] = queue.SimpleQueue()
        threading.Thread(target=self.write_loop, daemon=True).start()

    def write(self, partner: str, uid: str, dmp_id: str, now: float) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queue.put(((partner, uid, dmp_id, now), fut))
        return fut

    def write_loop(self) -> None:
        while True:
            batch = [self.queue.get()]
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            answers = self.commit([writes for writes, _ in batch])
            loop = batch[0][1].get_loop()
            loop.call_soon_threadsafe(_settle, [fut for _, fut in batch], answers)

    def commit(self, batch: list[tuple[str, str, str, float]]) -> list[Any]:
        now = time.time()
        names = {}
        for partner, uid, dmp_id, at in batch:
            minute = int(at // 60)
            names[dmp_id] = (
                f"dmp:{{{dmp_id}}}:p",
                f"dmpc:{{{minute}:{int((at - minute * 60) * (SLICES / 60)) % SLICES}}}:m",
                f"dmp:w:{{{partner}:{uid}}}",
            )
        wanted = sorted({key for keys in names.values() for key in keys})
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        query = "SELECT key, value FROM fm WHERE key IN (" + ",".join("?" * len(wanted)) + ")"
        maps = {key: unpack(blob, now) for key, blob in c.execute(query, wanted).fetchall()}
        written: dict[str, Fields] = {}
        reverse: list[Any] = []
        answers = []
        for partner, uid, dmp_id, at in batch:
            profile, marks, waiting = names[dmp_id]
            fields = written.get(profile) or maps.get(profile, {})
            old = fields.get(partner)
            fields[partner] = (struct.pack(">d", at) + uid.encode(), at + TTL)
            written[profile] = fields
            mark_map = written.get(marks) or maps.get(marks, {})
            mark_map[dmp_id] = (str(int(at)).encode(), at + MARK_TTL)
            written[marks] = mark_map
            reverse += [f"dmp:pid:{{{partner}:{uid}}}", dmp_id.encode() + struct.pack(">d", at)]
            reverse.append(at + TTL)
            answers.append((None if old is None else old[0][8:], maps.get(waiting, {})))
        rows = []
        for key, fields in written.items():
            rows += [key, pack(fields), min(expires_at for _, expires_at in fields.values())]
        c.execute("INSERT OR REPLACE INTO fm VALUES " + ",".join(["(?,?,?)"] * len(written)), rows)
        c.execute("INSERT OR REPLACE INTO kv VALUES " + ",".join(["(?,?,?)"] * len(batch)), reverse)
        c.execute("COMMIT")
        return answers


def _settle(futures: list[asyncio.Future[Any]], answers: list[Any]) -> None:
    for fut, answer in zip(futures, answers, strict=True):
        fut.set_result(answer)


writer: Writer | None = None


def query_values(query: str) -> dict[str, str]:
    values = {}
    for part in query.split("&"):
        key, _, value = part.partition("=")
        values[key] = value
    return values


def cookie_id(header: str | None) -> str | None:
    if header is None:
        return None
    for part in header.split(";"):
        part = part.strip()
        if part.startswith(COOKIE):
            value = part[len(COOKIE) :]
            try:
                raw = base64.urlsafe_b64decode(value + "==")
            except ValueError:
                return None
            return value if len(raw) == 16 and len(value) == 22 else None
    return None


async def app(scope: Any, proto: Any) -> None:
    global writer
    if writer is None:
        writer = Writer()
    partner = scope.path.rpartition("/")[2]
    values = query_values(scope.query_string)
    uid, dmp_id = values.get("uid"), cookie_id(scope.headers.get("cookie"))
    if partner != "analytics" or not uid or values.get("c", "shop") != "shop" or dmp_id is None:
        proto.response_bytes(200, PIXEL, GIF)  # wait_http's probe
        return
    await writer.write(partner, uid, dmp_id, time.time())
    proto.response_bytes(200, PIXEL, GIF)
