"""``DmpDefinitions`` over a real SQLite store: stored changes overlaid on the file's entries,
hooks told once per change, stored entries that no longer validate kept at their last value."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cookiematch.config.dmp import DmpConfig, DmpPartnerConfig
from cookiematch.errors import AdminError, NotFound
from cookiematch.storage import Store, open_store
from cookiematch.storage.change_watch import FULL_READ_SECONDS
from cookiematch.web.dmp.definitions import CHANGED_KEY, DEFINITIONS_KEY, DmpDefinitions

SYNC = "https://{}.example/s?r=${{CALLBACK_URL}}"
FILE = DmpConfig(partners=(DmpPartnerConfig(id="a", sync_url=SYNC.format("a")),))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite://{tmp_path / 'dmp.db'}")
    yield opened
    await opened.close()


def ids(dmp: DmpConfig) -> list[str]:
    return [p.id for p in dmp.partners]


async def test_changes_reach_another_worker_and_its_hooks_once(store: Store) -> None:
    seen: list[list[str]] = []
    here = DmpDefinitions(store, FILE)
    there = DmpDefinitions(store, FILE, on_change=[lambda dmp: seen.append(ids(dmp))])
    await here.put("partners", "b", {"sync_url": SYNC.format("b")})
    await here.delete("partners", "a")
    await there.refresh()
    await there.refresh()  # nothing changed since: no call
    assert seen == [["b"]] and ids(here.current) == ["b"]
    with pytest.raises(NotFound):
        there.entry("partners", "a")
    with pytest.raises(AdminError) as refused:
        await there.put("partners", "c", {"sync_url": "https://c.example/no-macro"})
    assert refused.value.errors[0]["field"] == "sync_url"
    assert ids(DmpDefinitions(store, FILE).current) == ["a"]  # before its first refresh


async def test_a_stored_entry_that_no_longer_validates_keeps_its_last_value(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    definitions = DmpDefinitions(store, FILE)
    await definitions.put("partners", "b", {"sync_url": SYNC.format("b"), "priority": 3})
    await store.hset(DEFINITIONS_KEY, {"partners:b": b'{"id": "b", "sync_url": "nope"}'})
    await store.hset(DEFINITIONS_KEY, {"partners:c": b"not json"})
    with caplog.at_level(logging.ERROR):
        await definitions.refresh()
        await definitions.refresh()
    assert ids(definitions.current) == ["a", "b"]  # b as it was, c left out
    assert definitions.current.partners[1].priority == 3
    refused = [r.getMessage() for r in caplog.records]
    assert len(refused) == 2 and all("is refused" in m for m in refused)
    assert ids(DmpDefinitions(store, FILE).current) == ["a"]


async def test_a_refresh_reads_the_map_when_its_token_changed_or_a_minute_on(
    store: Store,
) -> None:
    """Another worker's change comes with a new token: read at the next refresh. An entry
    written without one (an earlier version's worker) is read once the map is a minute old."""
    now = [0.0]
    here = DmpDefinitions(store, FILE)
    there = DmpDefinitions(store, FILE, monotonic=lambda: now[0])
    await there.refresh()
    await here.put("partners", "b", {"sync_url": SYNC.format("b")})
    assert await store.get(CHANGED_KEY) is not None
    await there.refresh()
    assert ids(there.current) == ["a", "b"]
    added = b'{"id": "c", "sync_url": "https://c.example/s?r=${CALLBACK_URL}"}'
    await store.hset(DEFINITIONS_KEY, {"partners:c": added})  # no token
    now[0] += FULL_READ_SECONDS - 1
    await there.refresh()
    assert ids(there.current) == ["a", "b"]
    now[0] += 1
    await there.refresh()
    assert ids(there.current) == ["a", "b", "c"]
