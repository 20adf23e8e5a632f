"""An export transport that answers from a script, and a sleep that only records its waits."""

from __future__ import annotations

import json
from collections.abc import Mapping

from cookiematch.dmp.transport import HttpAnswer


class ScriptedTransport:
    """Answers from a script (status, body) or raises; records every request."""

    def __init__(self, *script: tuple[int, object] | type[Exception]) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpAnswer:
        self.requests.append((url, body, dict(headers)))
        step = self.script.pop(0) if self.script else (200, {})
        if isinstance(step, type):
            raise step("scripted")
        status, data = step
        return HttpAnswer(status, json.dumps(data).encode(), {})

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(body) for _, body, _ in self.requests]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
