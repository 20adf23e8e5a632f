"""What every role's server worker shares: its ``App`` and lifecycle, the store, the privacy
policy, background tasks, ``/metrics`` collectors, and the probes ``/livez`` (the worker
answers) and ``/readyz`` (it may take traffic: its store answers, it is not stopping), named
as Kubernetes names them.

A role's server subclasses ``RoleServer`` and writes ``build(store)``: the role's objects over
the store, its routes bound on ``self.app`` (``/metrics`` among its admin routes from
``metrics_routes``, or on the role's metrics listener, started after ``build``), its tasks
started with ``run`` and its collectors registered with ``collect``. The startup hook opens
the store and calls ``build``; a start that fails releases what it had started and closes
the store (the shutdown hook does not run after a failed start). The shutdown hook stops the
metrics listener and the tasks and unregisters the collectors, lets the role close its own
clients (``close``), then closes the store, pending writes flushed.

Store calls made from a request go through a guard (``storage/guard.py``) built at startup from
the role table's ``store_deadline_ms`` and ``admin_store_deadline_ms``: ``requests`` for the
browser-facing routes, ``admin`` (the same breaker, the longer deadline) for the admin API and
the short periodic tasks; ``build`` gets the backend itself for what takes long by nature.
``on_store_call`` and ``on_breaker`` observe the guard: ``web/store_metrics.py``'s families
unless replaced before startup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute

from cookiematch.config import Config, Secret
from cookiematch.config.fields import ADMIN_STORE_DEADLINE_MS, STORE_DEADLINE_MS
from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.storage import Store, connect_store
from cookiematch.storage.breaker import StateObserver
from cookiematch.storage.guard import CallObserver, GuardedStore
from cookiematch.web import store_metrics
from cookiematch.web.http import Request, Response
from cookiematch.web.loop_lag import watch_loop
from cookiematch.web.metrics import MetricsListener, metrics_route
from cookiematch.web.privacy_metrics import decision_counts
from cookiematch.web.router import DEFAULT_MAX_BODY, App

__all__ = ["LIVEZ_PATH", "READYZ_PATH", "RoleServer", "StoreDeadlines"]

log = logging.getLogger(__name__)

LIVEZ_PATH = "/livez"
READYZ_PATH = "/readyz"
READY_TIMEOUT_SECONDS = 0.5
READY_CACHE_SECONDS = 0.5
_LIVE = Response.json(200, {"status": "live"})
_READY = Response.json(200, {"status": "ready"})
_NOT_READY = Response.json(503, {"status": "not ready"})


class _DeadlineKeys(Protocol):
    @property
    def store_deadline_ms(self) -> int: ...
    @property
    def admin_store_deadline_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class StoreDeadlines:
    """Seconds a store call may take: from a browser's request, from an admin request."""

    request: float
    admin: float

    @classmethod
    def of(cls, table: _DeadlineKeys) -> StoreDeadlines:
        """From a role table's ``store_deadline_ms`` and ``admin_store_deadline_ms``."""
        return cls(table.store_deadline_ms / 1000, table.admin_store_deadline_ms / 1000)


class RoleServer:
    """One server worker of a role; ``app`` is what granian serves."""

    role = ""  # the role's table name: "exchange", "buyer", "dmp"

    def __init__(
        self,
        config: Config,
        *,
        deadlines: StoreDeadlines | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.config = config
        self.policy = PrivacyPolicy(config.privacy.settings(), decision_counts())  # the process's
        self.deadlines = deadlines or StoreDeadlines(
            STORE_DEADLINE_MS / 1000, ADMIN_STORE_DEADLINE_MS / 1000
        )
        self.on_store_call: CallObserver | None = store_metrics.on_call
        self.on_breaker: StateObserver | None = store_metrics.on_state
        self.store: GuardedStore | None = None  # the requests' view; closing it closes all
        self.tasks: list[asyncio.Task[None]] = []
        self._samplers: list[asyncio.Task[None]] = []  # the store's statistics, the loop's lag
        self._collectors: list[Collector] = []
        self._metrics_listener: MetricsListener | None = None
        self.app = App(max_body=max_body)
        self._requests: GuardedStore | None = None
        self._admin: GuardedStore | None = None
        self._stopping = False
        self._ready = True  # until a probe says otherwise (one warning per change)
        self._ready_at = -READY_CACHE_SECONDS
        self.app.on_startup.append(self.start)
        self.app.on_shutdown.append(self.stop)

    async def build(self, store: Store) -> None:
        """The role's objects over ``store``, its routes, tasks and collectors."""
        raise NotImplementedError

    async def close(self) -> None:
        """The role's own clients, closed after its tasks stopped, before the store."""

    def run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` until shutdown."""
        self.tasks.append(asyncio.create_task(work))

    def every(self, seconds: float, step: Callable[[], Awaitable[None]], failed: str) -> None:
        """Await ``step`` every ``seconds`` until shutdown; a failure is logged (``failed``
        says what is kept meanwhile) and the next round tries again. An unreachable store is
        not logged here: its guard logs the outage once."""

        async def forever() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await step()
                except StoreUnavailable:
                    pass
                except Exception:
                    log.exception("%s", failed)

        self.run(forever())

    def metrics_routes(self, admin_token: Secret | None) -> list[BaseRoute]:
        """``/metrics`` for the role's admin application, as ``[metrics]`` says: there, or
        (with the role's metrics listener) nowhere, the listener serving it instead."""
        settings = self.config.metrics
        listen = settings.listen_for(self.role)
        if listen is None:
            return [metrics_route(settings.access, admin_token)]
        self._metrics_listener = MetricsListener(listen, settings.access, admin_token)
        return []

    def collect(self, collector: Collector) -> None:
        """Expose ``collector`` at ``/metrics`` until shutdown."""
        REGISTRY.register(collector)
        self._collectors.append(collector)

    @property
    def requests(self) -> Store:
        """The store as browser-facing routes use it (``store_deadline_ms``)."""
        assert self._requests is not None, "only from build()"
        return self._requests

    @property
    def admin(self) -> Store:
        """The store as the admin API and the short periodic tasks use it."""
        assert self._admin is not None, "only from build()"
        return self._admin

    async def start(self) -> None:
        store = await connect_store(self.config.store.url, durability=self.config.store.durability)
        guard = self._requests = GuardedStore(
            store,
            deadline=self.deadlines.request,
            name=f"{type(self).__name__} store",
            on_call=self.on_store_call,
            on_state=self.on_breaker,
        )
        self._admin = guard.view(self.deadlines.admin)
        try:
            await self.build(store)
            self._samplers = [
                asyncio.create_task(store_metrics.StoreSampler(guard).run()),
                asyncio.create_task(watch_loop()),
            ]
            if self._metrics_listener is not None:
                await self._metrics_listener.start()
            self.app.route(LIVEZ_PATH, self._livez)
            self.app.route(READYZ_PATH, self._readyz)
        except BaseException:
            await self._release()
            await guard.close()
            raise
        self.store = guard

    async def _livez(self, request: Request) -> Response:
        """``GET /livez``: the worker answers."""
        return _LIVE

    async def _readyz(self, request: Request) -> Response:
        """``GET /readyz``: the worker may take traffic: started, neither draining nor stopping,
        the store's breaker closed, its queue of writes under its bound and the store answering
        a ping within ``READY_TIMEOUT_SECONDS`` (the answer is kept ``READY_CACHE_SECONDS``, so
        probes cannot load the store; an open breaker answers at once)."""
        store = self.store
        if store is not None and (store.breaker_open or store.over_backlog):
            return _NOT_READY  # the breaker logs its changes
        now = time.monotonic()
        if now - self._ready_at >= READY_CACHE_SECONDS:
            self._ready = await self._store_answers()
            self._ready_at = time.monotonic()
        stopping = self._stopping or self.app.drain.active  # ``web/drain.py``
        return _READY if self._ready and not stopping else _NOT_READY

    async def _store_answers(self) -> bool:
        if self.store is None:
            return False
        try:
            await asyncio.wait_for(self.store.ping(), READY_TIMEOUT_SECONDS)
        except (StorageError, TimeoutError) as exc:
            if self._ready and not self.store.breaker_open:  # else the breaker said it
                log.warning("not ready: the store does not answer: %s", exc)
            return False
        if not self._ready:
            log.info("ready: the store answers")
        return True

    async def stop(self) -> None:
        self._stopping = True
        await self._release()
        await self.close()
        if self.store is not None:
            await self.store.close()

    async def _release(self) -> None:
        if self._metrics_listener is not None:
            await self._metrics_listener.close()
            self._metrics_listener = None
        for collector in reversed(self._collectors):
            REGISTRY.unregister(collector)
        self._collectors.clear()
        samplers, self._samplers = self._samplers, []
        for task in [*reversed(self.tasks), *samplers]:  # last first
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
