"""What every role's server worker shares: its ``App`` and lifecycle, the store, the privacy
policy, background tasks and ``/metrics`` collectors.

A role's server subclasses ``RoleServer`` and writes ``build(store)``: the role's objects over
the store, its routes bound on ``self.app``, its tasks started with ``run`` and its collectors
registered with ``collect``. The startup hook opens the store and calls ``build``; a start that
fails releases what it had started and closes the store (the shutdown hook does not run after
a failed start). The shutdown hook stops the tasks and unregisters the collectors, lets the
role close its own clients (``close``), then closes the store, pending writes flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from cookiematch.config import Config
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.storage import Store, connect_store
from cookiematch.web.privacy_metrics import PrivacyDecisions
from cookiematch.web.router import DEFAULT_MAX_BODY, App

__all__ = ["RoleServer"]


class RoleServer:
    """One server worker of a role; ``app`` is what granian serves."""

    def __init__(self, config: Config, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.config = config
        self.policy = PrivacyPolicy(config.privacy.settings())  # the one of this process
        self.store: Store | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self._collectors: list[Collector] = []
        self.app = App(max_body=max_body)
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

    def collect(self, collector: Collector) -> None:
        """Expose ``collector`` at ``/metrics`` until shutdown."""
        REGISTRY.register(collector)
        self._collectors.append(collector)

    async def start(self) -> None:
        store = await connect_store(self.config.store.url, durability=self.config.store.durability)
        try:
            await self.build(store)
            self.collect(PrivacyDecisions(self.policy))
        except BaseException:
            await self._release()
            await store.close()
            raise
        self.store = store

    async def stop(self) -> None:
        await self._release()
        await self.close()
        if self.store is not None:
            await self.store.close()

    async def _release(self) -> None:
        for collector in reversed(self._collectors):
            REGISTRY.unregister(collector)
        self._collectors.clear()
        for task in reversed(self.tasks):  # the last started stops first
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
