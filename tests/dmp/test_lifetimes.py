"""Bounded lifetimes of segment memberships and export state (``dmp/lifetimes.py``) on SQLite,
Redis and Redis Cluster, on a clock set by hand: written with their lifetime, rewritten by a
recompute or an export once half of it is gone, lapsed when nothing confirms them, and an export
that removes what it sent even once the store's record of it lapsed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.config import load_config
from cookiematch.config.dmp import DmpConfig
from cookiematch.dmp import keys
from cookiematch.roots.dmp import DmpCore, build_core
from cookiematch.storage import Store

from .helpers import FakeClock
from .scripted_transport import ScriptedTransport
from .segment_stores import clocked_store, wall_clock  # noqa: F401
from support.stores import shared_cluster, shared_redis  # noqa: F401

MEMBERSHIP_DAYS, EXPORT_DAYS = 10, 20
CONFIG = f"""
[dmp]
membership_ttl_days = {MEMBERSHIP_DAYS}
export_state_ttl_days = {EXPORT_DAYS}

[[dmp.partners]]
id = "dsp"
sync_url = "https://dsp.example/s?r=${{CALLBACK_URL}}"

[[dmp.segments]]
id = "dsp_synced"
rule = {{ synced = "dsp" }}

[[dmp.destinations]]
id = "dsp_api"
url = "https://dsp.example/segments"
secret = "destination-secret-0123456789"
partner = "dsp"
"""
UID = "AAAAAAAAAAAAAAAAAAAAAA"
SHARD = keys.shard_of(UID)


def write_config(directory: Path, text: str = CONFIG) -> DmpConfig:
    path = directory / "dmp.toml"
    path.write_text(text)
    dmp = load_config(path).dmp
    assert dmp is not None
    return dmp


@dataclass
class Dmp:
    core: DmpCore
    clock: FakeClock


@pytest.fixture
async def dmp(clocked_store: Store, wall_clock: FakeClock, tmp_path: Path) -> Dmp:  # noqa: F811
    """The DMP core with one browser synced with the dsp (its match kept a year)."""
    core = build_core(write_config(tmp_path), clocked_store, clock=wall_clock)
    await core.matches.record("dsp", UID, "D-1", wall_clock())
    return Dmp(core, wall_clock)


async def lifetime(core: DmpCore) -> float | None:
    """The remaining lifetime of the browser's membership (its own map's entry)."""
    own = await core.store.hgetall_entries(keys.membership_key(UID))
    return own["dsp_synced"][1] if own else None


async def sent_lifetime(core: DmpCore) -> float | None:
    entries = await core.store.hgetall_entries(keys.sent_key("dsp_synced", "dsp_api", SHARD))
    return entries[UID][1] if UID in entries else None


async def export(core: DmpCore) -> tuple[list[str], list[str]]:
    """One export to the dsp: the IDs it added and removed."""
    transport = ScriptedTransport()
    await core.exports.export("dsp_synced", "dsp_api", transport)
    bodies = transport.bodies()
    add = [i for b in bodies for i in b["add"]]  # type: ignore[attr-defined]
    remove = [i for b in bodies for i in b["remove"]]  # type: ignore[attr-defined]
    return add, remove


async def test_a_membership_lives_its_lifetime_and_a_recompute_renews_it(dmp: Dmp) -> None:
    core, clock = dmp.core, dmp.clock
    first = await core.segments.recompute()
    assert (first.joined, first.refreshed) == (1, 0)
    assert await lifetime(core) == MEMBERSHIP_DAYS * DAY

    clock.now += 4 * DAY  # more than half left: confirmed, not rewritten
    assert (await core.segments.recompute()).refreshed == 0
    assert await lifetime(core) == 6 * DAY

    clock.now += 2 * DAY  # less than half left: rewritten with its first joining time
    assert (await core.segments.recompute()).refreshed == 1
    assert await lifetime(core) == MEMBERSHIP_DAYS * DAY
    joined = await core.segments.memberships.of(UID)
    assert joined == {"dsp_synced": float(int(clock.now - 6 * DAY))}

    clock.now += MEMBERSHIP_DAYS * DAY + 1  # nothing confirmed it: gone
    assert await core.segments.memberships.of(UID) == {}
    assert (await core.segments.recompute()).joined == 1  # the rule still holds: joined again


async def test_export_state_outlives_a_lapsed_membership_and_removes_it(dmp: Dmp) -> None:
    core, clock = dmp.core, dmp.clock
    await core.segments.recompute()
    assert await export(core) == (["D-1"], [])
    assert await sent_lifetime(core) == EXPORT_DAYS * DAY

    clock.now += MEMBERSHIP_DAYS * DAY + 1  # the membership lapsed, the state did not
    assert await export(core) == ([], ["D-1"])
    assert await sent_lifetime(core) is None
    assert await export(core) == ([], [])


async def test_a_removal_is_sent_after_the_stores_sent_entry_lapsed(dmp: Dmp) -> None:
    """The engine keeps what it sent until the destination answered, whatever the lifetime of
    the key-value store's record."""
    core, clock = dmp.core, dmp.clock
    await core.recompute()  # on the engine
    await export(core)
    clock.now += EXPORT_DAYS * DAY + 1  # the membership and the store's record both lapsed
    assert await sent_lifetime(core) is None
    assert await export(core) == ([], ["D-1"])
    assert await export(core) == ([], [])

    await core.recompute()  # a member again
    assert await export(core) == (["D-1"], [])


async def test_an_export_renews_the_entry_of_an_unchanged_member(dmp: Dmp) -> None:
    core, clock = dmp.core, dmp.clock
    await core.segments.recompute()
    await export(core)
    clock.now += 6 * DAY
    await core.segments.recompute()  # the membership renewed
    assert await export(core) == ([], [])
    assert await sent_lifetime(core) == (EXPORT_DAYS - 6) * DAY  # more than half left
    clock.now += 5 * DAY
    await core.segments.recompute()
    assert await export(core) == ([], [])
    assert await sent_lifetime(core) == EXPORT_DAYS * DAY
    report = await core.store.get_entry(keys.last_export_key("dsp_synced", "dsp_api"))
    assert report is not None and report[1] == EXPORT_DAYS * DAY


async def test_entries_written_without_a_lifetime_get_one(dmp: Dmp) -> None:
    """Memberships and sent IDs stored before lifetimes existed are given one when confirmed."""
    core, clock = dmp.core, dmp.clock
    now = str(int(clock())).encode()
    await core.store.hset(keys.membership_key(UID), {"dsp_synced": now})
    await core.store.hset(keys.sent_key("dsp_synced", "dsp_api", SHARD), {UID: b"D-1"})
    assert (await core.segments.recompute()).refreshed == 1
    assert await lifetime(core) == MEMBERSHIP_DAYS * DAY
    assert await export(core) == ([], [])
    assert await sent_lifetime(core) == EXPORT_DAYS * DAY


def test_defaults_follow_the_match_lifetime_and_export_state_must_outlive_memberships(
    tmp_path: Path,
) -> None:
    defaults = DmpConfig()
    assert defaults.membership_ttl() == defaults.match_ttl_days * DAY == 390 * DAY
    assert defaults.export_state_ttl() == 420 * DAY
    assert DmpConfig(match_ttl_days=30).export_state_ttl() == 60 * DAY
    short = DmpConfig(membership_ttl_days=30, export_state_ttl_days=10)
    assert [key for key, _ in short.problems()] == ["export_state_ttl_days"]
    assert DmpConfig(membership_ttl_days=30, export_state_ttl_days=30).problems() == []
