"""The store's part of one frequency-capping check, per record layout, with a minimal client:
the floor the checks' own client work is measured against.

    .venv/bin/python bench/check_layout_bench.py [--checks 200000] [--rounds 2] [--buyers 1]

A private redis-server; for each round and layout, ``--checks`` checks of new browsers, each
browser checked for ``--buyers`` buyers, in pipelines of 256 (the checks' slice), sent over a
raw socket as ``hiredis.pack_command`` packs them and read back with a ``hiredis.Reader``: no
store layer, no asyncio. Layouts:

- ``browser record``: today's, one field map per browser (``br:{tag}``, field
  ``gid:<nid>``), written by one ``HSWAP_FIELD_EACH`` script per slice (the field and the
  second's value sent once; a Lua loop of ``HGET``, ``HSET``, ``PEXPIREAT … NX`` per record,
  one flat answer);
- ``browser record, each``: the same records written by ``HSWAP_EXPIRING_EACH``, the general
  script (each key's expiry, count, field and value; a list a key), which sent them before;
- ``plain key``: one key per browser and buyer (``gt:{tag}:<nid>``) written with
  ``SET key value GET PXAT`` (one native command, the old value answered): measured in a
  served exchange and not kept (docs/performance.md, "The gid times as keys of their own,
  measured and not kept").

Prints the client's and redis-server's CPU per check (``/proc``) and the server's memory per
check (``used_memory``, the keys of each round deleted after it), layouts alternated.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hiredis
import servers

from cookiematch.exchange.keys import browser_tag
from cookiematch.storage.redis_scripts import HSWAP_EXPIRING_EACH, HSWAP_FIELD_EACH

SLICE = 256


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def exchange(sock: socket.socket, reader: Any, commands: Sequence[tuple[Any, ...]]) -> None:
    """Send ``commands`` in one write and read their replies."""
    sock.sendall(b"".join([hiredis.pack_command(c) for c in commands]))
    replies = 0
    while replies < len(commands):
        if reader.gets() is False:
            reader.feed(sock.recv(1 << 20))
        else:
            replies += 1


SCRIPTS = (HSWAP_FIELD_EACH, HSWAP_EXPIRING_EACH)


def slice_commands(layout: str, part: list[bytes], nid: str, far: int, value: bytes) -> list[Any]:
    if layout.startswith("browser record"):
        keys = [("br:" + browser_tag(b)).encode() for b in part]
        field = f"gid:{nid}".encode()
        if layout == "browser record":
            return [HSWAP_FIELD_EACH.command_keys(keys, (far, field, value))]
        args = [a for _ in part for a in (far, 1, field, value)]
        return [HSWAP_EXPIRING_EACH.command_keys(keys, args)]
    return [("SET", f"gt:{browser_tag(b)}:{nid}".encode(), value, "GET", "PXAT", far) for b in part]


def used_memory(sock: socket.socket, reader: Any) -> int:
    command: Any = ("INFO", "memory")
    sock.sendall(hiredis.pack_command(command))
    while (reply := reader.gets()) is False:
        reader.feed(sock.recv(1 << 20))
    for line in reply.decode().splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise RuntimeError("INFO memory without used_memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--buyers", type=int, default=1, help="buyers checked per browser")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="cookiematch-layout-") as tmp,
        servers.redis_server(Path(tmp)) as port,
    ):
        measure(port, args.checks, args.rounds, args.buyers)


def measure(port: int, checks: int, rounds: int, buyers: int) -> None:
    """Each layout's CPU per check, alternated over ``rounds``."""
    pid = servers.redis_pid(port)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = hiredis.Reader()
    exchange(sock, reader, [("SCRIPT", "LOAD", script.body) for script in SCRIPTS])
    now_ms = int(time.time() * 1000)
    far = now_ms + 14 * 86_400_000
    value = b"\x01" + far.to_bytes(8, "big") + str(now_ms // 1000).encode()
    for _ in range(rounds):
        for layout in ("browser record", "browser record, each", "plain key"):
            browsers = [os.urandom(16) for _ in range(checks // buyers)]
            nids = [f"buyer-{n}" for n in range(buyers)]
            memory = used_memory(sock, reader)
            client, server = time.process_time(), cpu_seconds(pid)
            for i in range(0, len(browsers), SLICE):
                for nid in nids:
                    part = browsers[i : i + SLICE]
                    exchange(sock, reader, slice_commands(layout, part, nid, far, value))
            done = len(browsers) * buyers
            client = time.process_time() - client
            server = cpu_seconds(pid) - server
            memory = used_memory(sock, reader) - memory
            exchange(sock, reader, [("FLUSHALL",)])
            print(
                f"{layout:20s} client {1e6 * client / done:5.2f} µs a check, "
                f"redis-server {1e6 * server / done:5.2f} µs a check, "
                f"{memory / done:5.0f} bytes a check",
                flush=True,
            )
    sock.close()


if __name__ == "__main__":
    main()
