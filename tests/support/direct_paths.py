"""An exchange App in this process answering ``/pixel`` through the RSGI adapter by either
path (the route's ``direct`` as served, or the handler alone), with what each answer counted:
the harness of tests/web/test_direct_pixel.py and tests/web/test_direct_hosted.py."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from cookiematch.config import load_config
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.roots.exchange import ExchangeServer
from cookiematch.web.counters import SHARED, LabelledCounter
from cookiematch.web.exchange import metrics
from cookiematch.web.http import Headers
from cookiematch.web.http_metrics import RESPONSES
from cookiematch.web.rsgi import RSGIAdapter

COUNTERS = [  # the monitor's events come from its background work too: ``issued`` is compared
    c
    for c in (*vars(metrics).values(), RESPONSES)
    if isinstance(c, LabelledCounter) and c is not metrics.BUYER_EVENTS
]


class Scope:
    """The attributes of granian's RSGI scope that the adapter reads."""

    def __init__(
        self,
        method: str,
        query: str,
        headers: Headers,
        scheme: str = "https",
        client: str = "127.0.0.1:40000",
        path: str = "/pixel",
    ) -> None:
        self.proto = "http"
        self.method = method
        self.path = path
        self.query_string = query
        self.scheme = scheme
        self.client = client
        self.headers = headers


class Proto:
    """Records the answer."""

    def __init__(self) -> None:
        self.answer: tuple[int, list[tuple[str, str]], bytes] | None = None

    def response_empty(self, status: int, headers: Any) -> None:
        self.answer = (status, list(headers), b"")

    def response_bytes(self, status: int, headers: Any, body: bytes) -> None:
        self.answer = (status, list(headers), body)


Answer = tuple[int, list[tuple[str, str]], bytes]
Effects = dict[str, Any]


def fresh_metrics() -> None:
    """Give this process a new metrics file before an app whose counts a test compares: in a
    long test process the worker's file may be full, and the series allocated then share one
    scratch value, which no comparison of counts survives."""
    SHARED.close()


class InProcess:
    """An exchange App in this process, answering through the RSGI adapter by either path."""

    def __init__(self, config: Path, *, records: str | None = None) -> None:
        """``records``: a key prefix whose stored records (key, value, lifetime in minutes)
        are part of what an answer did, removed after each answer."""
        self.records = records
        fresh_metrics()
        self.loop = asyncio.new_event_loop()
        self.server = ExchangeServer(load_config(config))
        self.app = self.server.app
        self.adapter = RSGIAdapter(self.app)
        self.loop.run_until_complete(self.app.startup())
        self.route = self.app.routes["/pixel"]
        assert self.route.direct is not None
        self.general = dataclasses.replace(self.route, direct=None)
        self.issued: list[tuple[Any, ...]] = []
        monitor = self.server.monitor
        assert monitor is not None
        gid_issued = monitor.gid_issued

        def recorded(nid: str, browser_id: bytes, *, new_cookie: bool = False) -> None:
            self.issued.append((nid, browser_id, new_cookie))
            gid_issued(nid, browser_id, new_cookie=new_cookie)

        monitor.gid_issued = recorded  # type: ignore[method-assign]

    def close(self) -> None:
        self.loop.run_until_complete(self.app.shutdown())
        self.loop.close()

    def snapshot(self) -> Effects:
        """The counts so far (the flat path's tally folded first, as a flush does)."""
        assert self.server.service is not None and self.server.service.common is not None
        self.server.service.common.fold()
        policy = self.server.policy
        assert isinstance(policy, PrivacyPolicy)
        counts = {c.name: {labels: c.value(labels) for labels in c.labelled()} for c in COUNTERS}
        return {"counters": counts, "policy": dict(policy.counts), "issued": len(self.issued)}

    def answer(self, scope: Scope, *, direct: bool) -> tuple[Answer, Effects]:
        """The answer by the route as served (``direct``) or by the handler alone, and what
        it counted."""
        self.app.routes["/pixel"] = self.route if direct else self.general
        try:
            before = self.snapshot()
            proto = Proto()
            self.loop.run_until_complete(self.adapter(scope, proto))
            after = self.snapshot()
            stored = self.loop.run_until_complete(self.take_records())
        finally:
            self.app.routes["/pixel"] = self.route
        assert proto.answer is not None
        issued = self.issued[before["issued"] :]
        return proto.answer, changes(before, after) | {"issued": issued, "stored": stored}

    async def take_records(self) -> list[tuple[str, bytes, int | None]]:
        """The records under ``self.records`` (removed), sorted."""
        if self.records is None:
            return []
        store = self.server.admin  # the admin deadline: scans are not the requests' work
        found = [
            (key, value, None if ttl is None else round(ttl / 60))
            async for key, value, ttl in store.scan_ttl(self.records)
        ]
        for key, _, _ in found:
            await store.delete(key)
        return sorted(found)

    def agree(self, scope: Scope) -> Answer:
        """Both paths' answers and counts, checked equal; the answer."""
        flat, flat_effects = self.answer(scope, direct=True)
        general, general_effects = self.answer(scope, direct=False)
        assert without_new_ids(flat) == without_new_ids(general), (scope.query_string, flat)
        assert flat_effects == general_effects, scope.query_string
        return flat


def without_new_ids(answer: Answer) -> Answer:
    """The answer with the browser ID of a Set-Cookie left out (the set-cookie hop draws a
    new one each time; neither path answers it differently)."""
    status, headers, body = answer
    kept = [
        (name, value.partition(";")[2] if name == "Set-Cookie" else value)
        for name, value in headers
    ]
    return status, kept, body


def changes(before: Effects, after: Effects) -> Effects:
    def diff(old: dict[Any, float], new: dict[Any, float]) -> dict[Any, float]:
        return {k: v - old.get(k, 0) for k, v in new.items() if v != old.get(k, 0)}

    counters = {
        name: diff(before["counters"].get(name, {}), values)
        for name, values in after["counters"].items()
    }
    return {
        "counters": {name: d for name, d in counters.items() if d},
        "policy": diff(before["policy"], after["policy"]),
    }
