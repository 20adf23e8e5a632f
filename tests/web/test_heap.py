"""A served worker settles its heap after start-up (``web/heap.py`` over ``heap.py``): one
collection, what start-up built frozen, the young generation's threshold raised; and it is the
last hook."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cookiematch.heap import THRESHOLDS
from cookiematch.web import server
from cookiematch.web.heap import settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was, afterwards."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def test_settling_freezes_what_exists_and_raises_the_thresholds(restored_gc: None) -> None:
    built_at_startup = [{"buyer": n} for n in range(1000)]
    await settle_heap()
    assert gc.get_threshold() == THRESHOLDS
    assert gc.get_freeze_count() >= len(built_at_startup)
    scanned = {id(obj) for obj in gc.get_objects()}  # the generations a collection scans
    assert not any(id(obj) in scanned for obj in built_at_startup)  # frozen: never again


def test_a_served_app_settles_its_heap_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(server.FACTORY_ENV, "sample_app:make_app")
    monkeypatch.syspath_prepend(str(server.Path(__file__).resolve().parent))
    app = server._served_app()
    assert app.on_startup[-1] is settle_heap
