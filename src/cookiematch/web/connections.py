"""How many connections a worker holds and how long an idle one stays open.

granian (hyper underneath) gives two levers, and both count connections, not requests:

- ``backpressure``: a worker accepts a connection only with a free permit and keeps the permit
  until the connection closes, idle or not. granian's default (backlog / workers, 1024 for
  one worker) let one client holding 1,024 idle connections make a worker unreachable.
- hyper's header read timeout: how long a connection may wait for a complete request head.
  Over plain HTTP/1 (``http=1``) it runs on a fresh connection from the accept and on a
  keep-alive connection from the end of each answer, so it is also the idle timeout. (In
  granian's ``auto`` mode a fresh connection first waits, without any timeout, for bytes to
  tell HTTP/1 from HTTP/2: a connection that never sends is held for ever.)

granian cannot close the oldest idle connections to make room for a new one, so the limit is
set far above any honest load (``MAX_CONNECTIONS``, bounded by the open-files limit) and every
connection that waits for a head is closed after ``IDLE_TIMEOUT_MS``: a client must renew
each held connection that often, and when the limit is reached a new client waits in the
listen backlog (first come, first accepted) for at most that long.
"""

from __future__ import annotations

import resource

__all__ = ["IDLE_TIMEOUT_MS", "MAX_CONNECTIONS", "RESERVED_FILES", "connection_limit"]

IDLE_TIMEOUT_MS = 15_000
"""A connection waiting for a request head (new, between keep-alive requests, or half through
a head) is closed after this long. Long enough for the pixels of one page and for a proxy's
upstream pool whose own idle timeout is shorter; short enough that held connections must be
renewed. nginx keeps an idle keep-alive connection 75 s."""

MAX_CONNECTIONS = 10_000
"""Open connections a worker accepts (granian's backpressure); about 10 KiB each once a
connection has served a request (3 KiB before)."""

RESERVED_FILES = 256
"""Descriptors a worker keeps for other than client connections (store, logs, modules)."""


def connection_limit(wanted: int = MAX_CONNECTIONS) -> int:
    """Raise this process's soft open-files limit toward ``wanted + RESERVED_FILES`` (up to
    the hard limit; granian's workers inherit it) and return how many connections it leaves
    room for, at least 1."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_FILES))
