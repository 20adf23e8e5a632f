"""A measurement taken once per interval across workers, even when it outlasts the interval."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from cookiematch.storage import open_store
from cookiematch.storage.measured import MeasuredLog


class Figure(msgspec.Struct):
    value: int


async def test_a_measurement_longer_than_the_interval_is_not_joined(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    started = 0

    async def slow() -> Figure:
        nonlocal started
        started += 1
        await asyncio.sleep(2.5)  # the scan outlasts the 1 s interval
        return Figure(started)

    def log() -> MeasuredLog[Figure]:
        return MeasuredLog(
            store, key="fig", kind=Figure, measure=slow, interval_seconds=1.0, what="figure"
        )

    one, two = log(), log()
    try:
        first = asyncio.ensure_future(one.measure_if_due())
        await asyncio.sleep(1.6)  # past the claim's first TTL: renewed meanwhile
        assert await two.measure_if_due() is None
        assert (await first) == Figure(1) and started == 1
    finally:
        await store.close()
