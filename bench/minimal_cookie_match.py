"""A minimal standalone RSGI app doing the exchange cookie match's real work, and nothing else:
the reference ``bench/cookie_match_reference.py`` measures cookiematch's ``/pixel`` against
(what is reachable on this server stack). No cookiematch code; granian serves
``minimal_cookie_match:app``.

Per request, as the benchmark's match tag asks (``/pixel?google_nid=…&google_cm&p1=v1&p2=v2``
with the exchange cookie among others):

- the query read strictly: split into parameters, each name and value percent-decoded where
  it has a ``%`` or ``+``, ``google_nid`` a known buyer, ``google_cm`` present and empty, any
  other ``google_`` parameter or a repeated one refused (the request then answers 400), the
  other parameters kept as extras, percent-encoded again (``urllib.parse.quote``);
- the exchange cookie read by name from the ``Cookie`` header, its value checked (22
  characters of base64url) and decoded to the 16-byte browser ID;
- the gid: the browser ID's AES block under the buyer's key, its HMAC-SHA256 tag (4 bytes,
  the pads hashed once), unpadded base64url (27 characters);
- the Location (the buyer's redirect URL, the extras, ``google_gid``, ``google_cver``) in one
  join, the 302 with ``Location`` and ``Cache-Control: no-store``;
- the frequency-capping record: the (buyer, browser) pair and its time kept in a dict; once a
  second a thread takes the dict and applies its checks to a SQLite file (``checks.db`` in
  the working directory, WAL): one read of the batch's previous times (a repeat within the
  expiry is a violation, counted), one upsert of the new ones, one commit. That record is what
  frequency-capping monitoring and pixel matching read (``MINIMAL_CHECKS=none``: the pairs are
  dropped at each hand-over instead, no store work).

    granian --interface rsgi minimal_cookie_match:app
"""

from __future__ import annotations

import binascii
import hashlib
import os
import queue
import re
import sqlite3
import threading
import time
from typing import Any
from urllib.parse import quote, unquote_plus

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

COOKIE = "cm_id"
BUYERS = {"ad_network_xyz": "http://ad.network.com/pixel?id="}
CVER = 1
TAG_BYTES = 4
_BROWSER_ID = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_NO_STORE = ("cache-control", "no-store")
_BAD = [("content-type", "text/plain")]
_NOT_MINE = [("cache-control", "no-store")]


class Keys:
    """One buyer's AES-128 and HMAC-SHA256 keys, the encryptor and the pads prepared once."""

    def __init__(self, nid: str) -> None:
        seed = hashlib.sha256(b"minimal exchange secret " + nid.encode()).digest()
        self.encrypt = Cipher(algorithms.AES(seed[:16]), modes.ECB()).encryptor().update
        mac_key = hashlib.sha256(b"mac" + seed).digest().ljust(64, b"\0")
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in mac_key))
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in mac_key))

    def gid(self, browser_id: bytes) -> str:
        block = self.encrypt(browser_id)
        inner = self.inner.copy()
        inner.update(block)
        outer = self.outer.copy()
        outer.update(inner.digest())
        data = block + outer.digest()[:TAG_BYTES]
        return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE)[:-1].decode()


KEYS = {nid: Keys(nid) for nid in BUYERS}
EXPIRY_SECONDS = 14 * 86400
SLICE = 400  # keys per read (SQLite's host parameters)
RECENT: dict[tuple[str, bytes], float] = {}  # the frequency-capping record of this second
_handed_over = [time.time()]
violations = [0]


def apply_checks(db: sqlite3.Connection, batch: dict[tuple[str, bytes], float]) -> None:
    """One batch's checks: the previous times read, violations counted, the new times
    written, one commit."""
    by_nid: dict[str, list[tuple[bytes, int]]] = {}
    for (nid, browser), at in batch.items():
        by_nid.setdefault(nid, []).append((browser, int(at)))
    for nid, pairs in by_nid.items():
        for start in range(0, len(pairs), SLICE):
            part = pairs[start : start + SLICE]
            marks = ",".join("?" * len(part))
            previous = dict(
                db.execute(
                    f"SELECT browser, at FROM gids WHERE nid = ? AND browser IN ({marks})",
                    (nid, *(browser for browser, _ in part)),
                )
            )
            for browser, at in part:
                before = previous.get(browser)
                if before is not None and at - before < EXPIRY_SECONDS:
                    violations[0] += 1
            db.executemany(
                "INSERT INTO gids (nid, browser, at) VALUES (?, ?, ?)"
                " ON CONFLICT (nid, browser) DO UPDATE SET at = excluded.at",
                [(nid, browser, at) for browser, at in part],
            )
    db.commit()


def check_forever() -> None:
    """The checks' thread: each batch handed over applied."""
    db = sqlite3.connect("checks.db", timeout=30)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS gids (nid TEXT, browser BLOB, at INTEGER,"
        " PRIMARY KEY (nid, browser)) WITHOUT ROWID"
    )
    db.commit()
    while True:
        apply_checks(db, BATCHES.get())


CHECKS = os.environ.get("MINIMAL_CHECKS", "thread")
BATCHES: queue.SimpleQueue[dict[tuple[str, bytes], float]] = queue.SimpleQueue()
if CHECKS == "thread":
    threading.Thread(target=check_forever, daemon=True).start()


def read_query(query: str) -> tuple[str, list[str]] | None:
    """(google_nid, encoded extras) of a cookie-match tag, or None when it is not one."""
    nid: str | None = None
    cm = False
    seen: set[str] = set()
    extras: list[str] = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name, errors="strict")
        if "%" in value or "+" in value:
            value = unquote_plus(value, errors="strict")
        if name in seen:
            return None
        seen.add(name)
        if name == "google_nid":
            nid = value
        elif name == "google_cm":
            if value:
                return None
            cm = True
        elif name.startswith("google_"):
            return None
        else:
            extras.append(f"{quote(name, safe='')}={quote(value, safe='')}" if eq else quote(name))
    if nid is None or not cm or nid not in BUYERS:
        return None
    return nid, extras


def read_cookie(header: str) -> bytes | None:
    """The browser ID in the exchange cookie, or None."""
    for pair in header.split(";"):
        name, _, value = pair.strip().partition("=")
        if name == COOKIE:
            if _BROWSER_ID.fullmatch(value) is None:
                return None
            return binascii.a2b_base64(value.encode().translate(_FROM_URLSAFE) + b"==")
    return None


async def app(scope: Any, proto: Any) -> None:
    tag = read_query(scope.query_string) if scope.path == "/pixel" else None
    if tag is None:
        proto.response_bytes(400, _BAD, b"not a cookie-match tag\n")
        return
    nid, extras = tag
    header = scope.headers.get("cookie")
    browser_id = None if header is None else read_cookie(header)
    if browser_id is None:
        proto.response_empty(204, _NOT_MINE)  # the set-cookie hop is not this reference's
        return
    gid = KEYS[nid].gid(browser_id)
    global RECENT
    now = time.time()
    if now - _handed_over[0] >= 1.0:  # the second's batch handed over (or, without checks,
        if CHECKS == "thread":  # dropped)
            BATCHES.put(RECENT)
        RECENT = {}
        _handed_over[0] = now
    RECENT[nid, browser_id] = now
    location = "&".join([BUYERS[nid], *extras, f"google_gid={gid}", f"google_cver={CVER}"])
    proto.response_empty(302, [("location", location), _NO_STORE])
