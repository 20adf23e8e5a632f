"""A circuit breaker in front of a store: fail at once while the store is known to be away.

    closed ──StoreUnavailable──────────────────────────────────────────────▶ open
      │                                                                      ▲  │
      └─MISSES_TO_OPEN deadline misses in a row: one probe, VERIFY_TIMEOUT ──┘  │
        (fails: open; answers: the store is up and only busy, stay closed)      │
      ▲                                                                         │
      └──────── the probe (ping, then one write) answers within PROBE_TIMEOUT ──┘
                (tried every PROBE_SECONDS while open, on a background task)

Deadline misses alone do not open it: under a burst a healthy store (or this worker's own
event loop) may answer later than a request's deadline, and refusing every call then would
turn a slow second into an outage. The misses start a probe with a longer timeout; only a
store that does not answer it is taken for away (a hung server, a partition without resets:
about ``VERIFY_TIMEOUT`` after the misses began, each call meanwhile bounded by its deadline).

While open, ``check()`` raises StoreUnavailable without touching the store. Each change is
logged once (opened: one WARNING with its cause; closed: one INFO) and reported to
``on_state(open)``; the calls themselves log nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from cookiematch.errors import StorageError, StoreUnavailable

__all__ = [
    "MISSES_TO_OPEN",
    "PROBE_SECONDS",
    "PROBE_TIMEOUT",
    "VERIFY_TIMEOUT",
    "Breaker",
    "StateObserver",
]

log = logging.getLogger("cookiematch.storage.guard")

MISSES_TO_OPEN = 5
"""Deadline misses in a row (no success between them) that open the breaker."""
PROBE_SECONDS = 0.5
"""The wait between probes while the breaker is open."""
PROBE_TIMEOUT = 0.5
"""A probe that takes longer fails."""
VERIFY_TIMEOUT = 1.0
"""The probe after deadline misses: a store that answers within this is busy, not away."""

StateObserver = Callable[[bool], None]
"""Told ``True`` when the breaker opens, ``False`` when it closes."""


class Breaker:
    """One per store and worker; ``probe`` raises (StorageError, TimeoutError) while the
    store is away."""

    def __init__(
        self,
        name: str,
        probe: Callable[[], Awaitable[None]],
        *,
        misses_to_open: int = MISSES_TO_OPEN,
        probe_seconds: float = PROBE_SECONDS,
        probe_timeout: float = PROBE_TIMEOUT,
        verify_timeout: float = VERIFY_TIMEOUT,
        on_state: StateObserver | None = None,
    ) -> None:
        self._name = name
        self._probe = probe
        self._misses_to_open = misses_to_open
        self._probe_seconds = probe_seconds
        self._probe_timeout = probe_timeout
        self._verify_timeout = verify_timeout
        self._on_state = on_state
        self._misses = 0
        self._opened_at: float | None = None
        self._cause = ""
        self._task: asyncio.Task[None] | None = None
        self._verifying: asyncio.Task[None] | None = None
        self._closed = False  # the store is closed: nothing more to probe
        self.refused = 0  # calls refused while open (statistics)
        self.busy = 0  # verifications the store passed: misses from load, not an outage

    @property
    def open(self) -> bool:
        return self._opened_at is not None

    def check(self) -> None:
        """StoreUnavailable at once while open."""
        if self._opened_at is not None:
            self.refused += 1
            raise StoreUnavailable(f"{self._name} unavailable: {self._cause}")

    def succeeded(self) -> None:
        self._misses = 0

    def missed(self, cause: str) -> None:
        """A call over its deadline: after ``misses_to_open`` in a row, one probe decides
        whether the store is away (open) or only busy (stay closed)."""
        self._misses += 1
        if (
            self._misses >= self._misses_to_open
            and self._opened_at is None
            and self._verifying is None
            and not self._closed
        ):
            cause = f"{self._misses} calls in a row over their deadline ({cause})"
            self._verifying = asyncio.get_running_loop().create_task(
                self._verify(cause), name=f"{self._name} verify"
            )

    async def _verify(self, cause: str) -> None:
        try:
            async with asyncio.timeout(self._verify_timeout):
                await self._probe()
        except (StorageError, TimeoutError) as exc:
            detail = str(exc) or f"no answer within {self._verify_timeout:.1f} s"
            self.trip(f"{cause}, then a probe failed: {detail}")
        except Exception:
            log.exception("%s: the probe failed unexpectedly", self._name)
        else:
            self.busy += 1
            self._misses = 0
        finally:
            self._verifying = None

    def trip(self, cause: str) -> None:
        """Open (if closed) and start probing."""
        if self._opened_at is not None or self._closed:
            return
        self._opened_at = time.monotonic()
        self._cause = cause
        log.warning(
            "%s: breaker opened, calls fail at once until it answers: %s", self._name, cause
        )
        self._notify(True)
        self._task = asyncio.get_running_loop().create_task(
            self._probe_until_back(), name=f"{self._name} probe"
        )

    async def _probe_until_back(self) -> None:
        while True:
            await asyncio.sleep(self._probe_seconds)
            try:
                async with asyncio.timeout(self._probe_timeout):
                    await self._probe()
            except (StorageError, TimeoutError):
                continue
            except Exception:  # a bug in a probe must not leave the breaker open for ever
                log.exception("%s: the probe failed unexpectedly; closing the breaker", self._name)
            self._close()
            return

    def _close(self) -> None:
        if self._opened_at is None:
            return
        seconds = time.monotonic() - self._opened_at
        self._opened_at = None
        self._misses = 0
        self._task = None
        log.info(
            "%s: breaker closed, the store answers again (open %.1f s, %d calls refused)",
            self._name, seconds, self.refused,
        )  # fmt: skip
        self._notify(False)

    def _notify(self, opened: bool) -> None:
        if self._on_state is not None:
            try:
                self._on_state(opened)
            except Exception:
                log.exception("%s: the breaker's on_state observer raised", self._name)

    async def close(self) -> None:
        """Stop probing for good (the store is being closed)."""
        self._closed = True
        for task in (self._task, self._verifying):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._verifying = None
