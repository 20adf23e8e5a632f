"""A worker's drain between SIGTERM and its stop, so no request sent on an open connection
goes unanswered.

granian stops a worker on SIGTERM at once: it stops accepting and closes every keep-alive
connection that is not in the middle of a request, so a request a client writes on such a
connection at that moment gets no answer. Under granian a worker instead keeps SIGTERM for
itself (``Drain.listen``, a startup hook of ``web/server.py``'s targets) and drains first:

1. every answer carries ``Connection: close`` (the adapters ask ``Drain.active``), so a client
   learns with its answer that the connection ends, and the server closes it after the
   answer; ``/readyz`` answers 503 (``roots/server.py``), so load balancers stop sending;
2. it keeps accepting and answering until no request has been answered for ``quiet`` seconds,
   or ``longest`` seconds have passed;
3. it sends itself SIGINT, on which granian stops the worker gracefully (in-flight requests
   finish, then the App's shutdown hooks run).

The master process forwards its SIGTERM to the workers and waits for them
(``workers_kill_timeout``), so a SIGTERM to the server drains every worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

__all__ = ["DRAIN_LONGEST_SECONDS", "DRAIN_QUIET_SECONDS", "Drain"]

log = logging.getLogger("cookiematch.web")

DRAIN_QUIET_SECONDS = 0.5
"""The drain ends once no request has been answered for this long."""

DRAIN_LONGEST_SECONDS = 10.0
"""The drain ends after this long even if requests keep coming."""

_POLL_SECONDS = 0.05


class Drain:
    """Whether this worker is draining, and the end of its drain."""

    __slots__ = ("_task", "active", "last_answer", "longest", "quiet")

    def __init__(
        self, *, quiet: float = DRAIN_QUIET_SECONDS, longest: float = DRAIN_LONGEST_SECONDS
    ) -> None:
        if quiet <= 0 or longest < 0:
            raise ValueError("drain times must be positive")
        self.quiet = quiet
        self.longest = longest
        self.active = False
        self.last_answer = 0.0
        self._task: asyncio.Task[None] | None = None

    async def listen(self) -> None:
        """Drain on SIGTERM from now on (a startup hook: granian has set its own handlers)."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.start)

    def start(self) -> None:
        """Begin draining (again: nothing); the worker stops itself at the end."""
        if self.active:
            return
        self.active = True
        self.last_answer = time.monotonic()
        log.info("draining: answers close their connections, /readyz answers 503")
        self._task = asyncio.get_running_loop().create_task(self._finish())

    def answered(self) -> None:
        """An answer went out while draining."""
        self.last_answer = time.monotonic()

    async def _finish(self) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(_POLL_SECONDS)
            now = time.monotonic()
            if now - self.last_answer >= self.quiet or now - started >= self.longest:
                break
        log.info("drained after %.1f s: stopping", time.monotonic() - started)
        os.kill(os.getpid(), signal.SIGINT)  # granian's graceful stop of this worker
