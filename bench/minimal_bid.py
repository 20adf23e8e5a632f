"""A minimal standalone RSGI app doing ``POST /bid``'s real work, and nothing else: the reference
``bench/bid_reference.py`` measures cookiematch's ``/bid`` against (what is reachable on this
server stack). No cookiematch code; granian serves ``minimal_bid:app``.

Per request: the OpenRTB request decoded with msgspec into Structs of the fields a bid needs,
one point read of the gid's forward entry in the buyer's store (SQLite: ``bm:{nid}:g:{gid}``,
the ``keys`` layout's 25-byte value; Redis: the field of its bucket, the ``buckets`` layout's
``HGET``), the decision (matched: the retargeting price; fresh: no
match tag), the ``nurl`` signed with HMAC-SHA256, the response encoded with msgspec.

    MINIMAL_DB=/path/store.db MINIMAL_READ=loop|thread|bare granian --interface rsgi minimal_bid:app
    MINIMAL_REDIS=host:port/db MINIMAL_READ=redis [MINIMAL_BUCKETS=n] granian … minimal_bid:app

``MINIMAL_READ=loop`` reads on the event loop's thread (a prepared statement, a page-cached
B-tree probe); ``thread`` hands the read to one reader thread and back through a future, as
the store's engine does; ``bare`` does no work at all: it reads the body and answers 204 (what
granian, the call into Python and the body cost a served request before any handler).
``MINIMAL_READ=redis`` reads Redis through the leanest client there is: one connection, the
``HGET``s of one turn of the event loop written together (a callback scheduled with
``call_soon``, no task), the replies parsed by a ``hiredis.Reader`` as the bytes arrive and
handed to their futures in order (no timeout, no reconnection: a reference, not a client).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import os
import queue
import sqlite3
import struct
import threading
import time
from typing import Any

import hiredis
import msgspec

NID = "finest-dsp"
STALE_AFTER = 14 * 86400
KEY = hashlib.sha256(b"bench-win-notice-key-0123456789").digest()
NURL_BASE = "http://buyer.localhost:8800/win"
ADM = "<div>Welcome back! The shoes you looked at are 20% off.</div>"
HEADERS = [("content-type", "application/json"), ("x-openrtb-version", "2.6")]
NO_BID = [("x-openrtb-version", "2.6")]
_ENTRY = struct.Struct(">B16sII")


class Format(msgspec.Struct):
    w: int | None = None
    h: int | None = None


class Banner(msgspec.Struct):
    w: int | None = None
    h: int | None = None
    format: list[Format] | None = None


class Imp(msgspec.Struct):
    id: str
    banner: Banner | None = None
    bidfloor: float = 0.0
    bidfloorcur: str = "USD"


class User(msgspec.Struct):
    id: str | None = None


class Request(msgspec.Struct):
    id: str
    imp: list[Imp] = []
    user: User | None = None
    tmax: int | None = None


class Bid(msgspec.Struct, omit_defaults=True):
    id: str
    impid: str
    price: float
    nurl: str | None = None
    adm: str | None = None
    adomain: list[str] | None = None
    cid: str | None = None
    crid: str | None = None
    w: int | None = None
    h: int | None = None
    ext: dict[str, Any] | None = None


class SeatBid(msgspec.Struct, omit_defaults=True):
    bid: list[Bid]
    seat: str | None = None


class Response(msgspec.Struct, omit_defaults=True):
    id: str
    seatbid: list[SeatBid] = []


decode = msgspec.json.Decoder(Request).decode
encode = msgspec.json.Encoder().encode
SQL = "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"


def connect() -> sqlite3.Connection:
    conn = sqlite3.connect(
        f"file:{os.environ['MINIMAL_DB']}?mode=ro", uri=True, check_same_thread=False
    )
    conn.execute("PRAGMA query_only = ON")
    return conn


class LoopReader:
    def __init__(self) -> None:
        self.conn = connect()

    async def get(self, gid: str) -> bytes | None:
        row = self.conn.execute(SQL, (f"bm:{NID}:g:{gid}", time.time())).fetchone()
        return None if row is None else row[0]


class ThreadReader:
    def __init__(self) -> None:
        self.conn = connect()
        self.queue: queue.SimpleQueue[tuple[str, asyncio.Future[bytes | None]]] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self.run, daemon=True).start()

    def run(self) -> None:
        while True:
            key, fut = self.queue.get()
            row = self.conn.execute(SQL, (key, time.time())).fetchone()
            fut.get_loop().call_soon_threadsafe(fut.set_result, None if row is None else row[0])

    def get(self, gid: str) -> asyncio.Future[bytes | None]:
        fut: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self.queue.put((f"bm:{NID}:g:{gid}", fut))
        return fut


class MinimalRedis(asyncio.Protocol):
    """The leanest Redis client: one connection, the commands of one loop turn in one write
    (``call_soon``, no task), the replies parsed where they arrive and handed to their futures
    in order (also ``bench/redis_read_bench.py``'s reference)."""

    def __init__(self) -> None:
        self.parser = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.out: list[bytes] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        reply = self.parser.gets()
        while reply is not False:
            self.waiting.popleft().set_result(reply)
            reply = self.parser.gets()

    def command(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if not self.out:
            loop.call_soon(self.flush)
        self.out.append(hiredis.pack_command(args))
        future = loop.create_future()
        self.waiting.append(future)
        return future

    def flush(self) -> None:
        self.transport.write(b"".join(self.out))
        self.out.clear()


class RedisReader(MinimalRedis):
    """The buyer's bucketed entry of a gid, read through ``MinimalRedis``."""

    def __init__(self) -> None:
        super().__init__()
        self.buckets = int(os.environ.get("MINIMAL_BUCKETS", -(-100_000_000 // 64)))
        self.ready: asyncio.Future[None] | None = None

    async def open(self) -> None:
        address, _, db = os.environ["MINIMAL_REDIS"].partition("/")
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, host, int(port))
        if await self.command(b"SELECT", db or b"0") != b"OK":
            raise RuntimeError("SELECT failed")

    async def get(self, gid: str) -> bytes | None:
        if self.ready is None:
            self.ready = asyncio.ensure_future(self.open())
        await self.ready
        raw_gid = base64.urlsafe_b64decode(gid + "=" * (-len(gid) % 4))
        digest = hashlib.blake2b(raw_gid, digest_size=8).digest()
        bucket = int.from_bytes(digest, "big") % self.buckets
        key = f"bm:{NID}:g:{bucket:x}"
        raw = await self.command(b"HGET", key, base64.b85encode(raw_gid))
        if raw is None:
            return None
        if raw[0] == 1:  # cookiematch's header: an expiry in ms, then the value
            if int.from_bytes(raw[1:7], "big") <= time.time() * 1000:
                return None
            return bytes(raw[7:])
        return bytes(raw[1:])


reader: LoopReader | ThreadReader | RedisReader | None = None


def nurl(auction: str, bid: str, imp: str, issued: int) -> str:
    t = str(issued)
    message = f"{len(auction)}:{auction},{len(bid)}:{bid},{len(imp)}:{imp},{len(t)}:{t},"
    mac = hmac.digest(KEY, message.encode(), "sha256")[:16]
    sig = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    return f"{NURL_BASE}?auction={auction}&bid={bid}&imp={imp}&t={t}&sig={sig}"


async def bare(scope: Any, proto: Any) -> None:
    """The body read and a 204 (``MINIMAL_READ=bare``)."""
    if scope.method == "POST":
        await proto()
        proto.response_empty(204, NO_BID)
    else:
        proto.response_empty(302, NO_BID)  # wait_http's probe


async def full(scope: Any, proto: Any) -> None:
    """The real work (``MINIMAL_READ=loop``, ``thread`` or ``redis``)."""
    global reader
    if reader is None:
        read = os.environ.get("MINIMAL_READ", "loop")
        reader = {"loop": LoopReader, "thread": ThreadReader, "redis": RedisReader}[read]()
    if scope.method != "POST":
        proto.response_empty(302, NO_BID)  # wait_http's probe
        return
    try:
        request = decode(await proto())
    except msgspec.DecodeError:
        proto.response_bytes(400, NO_BID, b"bad request\n")
        return
    user = request.user
    raw = None if user is None or user.id is None else await reader.get(user.id)
    now = time.time()
    fresh = False
    if raw is not None:
        _, _uid, _cver, updated = _ENTRY.unpack(raw)
        fresh = now - updated < STALE_AFTER
    if raw is None or not request.imp or request.imp[0].banner is None:
        proto.response_empty(204, NO_BID)
        return
    imp = request.imp[0]
    banner = imp.banner
    assert banner is not None
    bid_id = f"{request.id}-{imp.id}"
    bid = Bid(
        id=bid_id,
        impid=imp.id,
        price=4.0,
        nurl=nurl(request.id, bid_id, imp.id, int(now)),
        adm=ADM,
        adomain=["finest-shoes.example"],
        cid="retarget-shoes",
        crid="retarget-shoes",
        w=banner.w,
        h=banner.h,
        ext={"matched": True, "match_tag": not fresh},
    )
    body = encode(Response(id=request.id, seatbid=[SeatBid(bid=[bid], seat=NID)]))
    proto.response_bytes(200, HEADERS, body)


app = bare if os.environ.get("MINIMAL_READ") == "bare" else full
