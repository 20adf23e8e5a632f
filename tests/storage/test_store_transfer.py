"""``cookiematch store copy`` and ``store stats`` between real backends (sqlite ⇄ redis)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from cookiematch.cli.store import store as store_cli
from cookiematch.storage import open_store
from cookiematch.storage.base import Write
from cookiematch.storage.transfer import key_prefix


async def fill(url: str) -> None:
    store = open_store(url)
    await store.write_many([Write(f"hm:{i}", b"v%d" % i) for i in range(1500)])
    await store.set("hm:ttl", b"t", ttl=3600)
    await store.set("bare", b"\x00")
    await store.hset("ul:{a}", {"1": b"x", "2": b"y"})
    await store.hset("ul:{a}", {"3": b"z"}, ttl=600)
    await store.close()


async def dump(url: str) -> tuple[list[tuple[str, bytes, bool]], list[tuple[str, object]]]:
    store = open_store(url)
    plain = [(k, v, ttl is not None) async for k, v, ttl in store.scan_ttl("")]
    maps = [
        (k, {f: (v, ttl is not None) for f, (v, ttl) in fields.items()})
        async for k, fields in store.scan_maps("")
    ]
    await store.close()
    return plain, maps


def test_copy_sqlite_to_redis_and_back(tmp_path: Path, redis_url: str, cluster_url: str) -> None:
    src = f"sqlite:///{tmp_path}/a.db"
    back = f"sqlite:///{tmp_path}/b.db"
    asyncio.run(fill(src))
    runner = CliRunner()
    for a, b in [(src, redis_url), (redis_url, cluster_url), (cluster_url, back)]:
        result = runner.invoke(store_cli, ["copy", a, b, "--batch", "100"])
        assert result.exit_code == 0, result.output
        assert "copied 1502 keys, 1 field maps (3 fields)" in result.output
    assert asyncio.run(dump(back)) == asyncio.run(dump(src))


def test_copy_keeps_remaining_ttl(tmp_path: Path, redis_url: str) -> None:
    async def check() -> float | None:
        store = open_store(redis_url)
        [(_, _, ttl)] = [item async for item in store.scan_ttl("hm:ttl")]
        await store.close()
        return ttl

    src = f"sqlite:///{tmp_path}/a.db"
    asyncio.run(fill(src))
    assert CliRunner().invoke(store_cli, ["copy", src, redis_url]).exit_code == 0
    assert asyncio.run(check()) == pytest.approx(3600, abs=5)


def test_stats(redis_url: str) -> None:
    asyncio.run(fill(redis_url))
    result = CliRunner().invoke(store_cli, ["stats", redis_url])
    assert result.exit_code == 0, result.output
    assert "redis_version" in result.output
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if line}
    assert lines["hm:"] == ["1,501", "0", "0"]
    assert lines["ul:"] == ["0", "1", "3"]
    assert lines["(none)"] == ["1", "0", "0"]


def test_unreachable_store_is_a_clear_error() -> None:
    result = CliRunner().invoke(store_cli, ["stats", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 1
    assert "cannot reach redis at 127.0.0.1:1" in result.output


def test_key_prefix() -> None:
    assert key_prefix("hm:{x}:1") == "hm:"
    assert key_prefix("plain") == "(none)"
