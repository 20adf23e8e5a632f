"""What is particular to the Redis backends: URLs, value layout, pipelining, start errors."""

from __future__ import annotations

import asyncio

import pytest

from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.storage import Durability, open_store
from cookiematch.storage import redis_codec as codec
from cookiematch.storage.base import Write
from cookiematch.storage.redis_store import RedisStore, parse_cluster_url

from .redis_servers import RedisClusterProcesses, RedisServer, free_port

# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "nodes", "user", "password"),
    [
        ("redis+cluster://a:7000,b:7001", [("a", 7000), ("b", 7001)], None, None),
        ("redis+cluster://:s%40cret@a:1", [("a", 1)], None, "s@cret"),
        ("redis+cluster://u:p@[::1]:7000,h/", [("::1", 7000), ("h", 6379)], "u", "p"),
    ],
)
def test_parse_cluster_url(
    url: str, nodes: list[tuple[str, int]], user: str | None, password: str | None
) -> None:
    assert parse_cluster_url(url) == (nodes, user, password)


@pytest.mark.parametrize(
    "url", ["redis+cluster://a:1/3", "redis+cluster://a:1?x=1", "redis+cluster://:p@"]
)
def test_bad_cluster_urls(url: str) -> None:
    with pytest.raises(StorageError, match="bad redis URL") as err:
        open_store(url)
    assert ":p@" not in str(err.value)  # the password is not echoed


def test_standalone_urls() -> None:
    store = open_store("redis://:pw@h:6380/2")
    assert isinstance(store, RedisStore)
    assert store.address == "h:6380/2"
    kwargs = store._client.connection_pool.connection_kwargs
    assert kwargs["password"] == "pw"
    tls = open_store("rediss://h")
    assert "SSL" in type(tls._client.connection_pool.connection_class()).__name__


# --- value layout ---------------------------------------------------------------------------


def test_codec_round_trip() -> None:
    assert codec.pack(b"v", None) == b"\x00v"
    raw = codec.pack(b"v", 1_700_000_000_123)
    assert len(raw) == 8
    assert codec.unpack(raw) == (b"v", 1_700_000_000_123)
    assert codec.live(raw, 1_700_000_000_122) == b"v"
    assert codec.live(raw, 1_700_000_000_123) is None
    with pytest.raises(StorageError, match="header"):
        codec.unpack(b"plain text")


def test_glob_prefix_escapes() -> None:
    assert codec.glob_prefix(b"a*b?[c]\\") == b"a\\*b\\?\\[c\\]\\\\*"


async def test_glob_characters_in_prefix(redis_url: str) -> None:
    store = open_store(redis_url)
    for key in ["a*b", "a*bc", "axb", "a?", "a[1]", "a1"]:
        await store.set(key, b"")
    assert [k async for k, _ in store.scan("a*")] == ["a*b", "a*bc"]
    assert [k async for k, _ in store.scan("a[")] == ["a[1]"]
    await store.close()


async def test_native_ttls(redis_server: RedisServer, redis_url: str) -> None:
    store = open_store(redis_url)
    await store.set("p", b"v", ttl=100)
    await store.hset("h", {"a": b"1"}, ttl=50)
    await store.hset("h", {"b": b"1"}, ttl=200)
    await store.hset("h", {"c": b"1"}, ttl=10)
    await store.hset("forever", {"a": b"1"})
    await store.hset("forever", {"b": b"1"}, ttl=10)
    await store.close()
    with redis_server.client() as client:
        assert 99 <= client.ttl("p") <= 100
        assert 199 <= client.ttl("h") <= 200  # the latest field expiry
        assert client.pexpiretime("forever") == codec.FAR_FUTURE_MS


# --- pipelining -----------------------------------------------------------------------------


async def test_concurrent_ops_share_pipelines(redis_url: str) -> None:
    store = open_store(redis_url)
    assert isinstance(store, RedisStore)
    await asyncio.gather(*(store.set(f"k{i}", b"v") for i in range(2000)))
    await asyncio.gather(*(store.get(f"k{i}") for i in range(2000)))
    assert store.commands == 4000
    assert store.flushes <= 40
    await store.close()


async def test_cluster_get_many_spans_slots(cluster_url: str) -> None:
    store = open_store(cluster_url)
    keys = [f"k{i}" for i in range(500)] + [f"{{tag}}{i}" for i in range(500)]
    await store.write_many([Write(k, k.encode()) for k in keys])
    assert await store.get_many(keys) == [k.encode() for k in keys]
    await store.close()


async def test_value_written_by_another_tool_is_an_error(
    redis_server: RedisServer, redis_url: str
) -> None:
    with redis_server.client() as client:
        client.set("foreign", b"no header")
    store = open_store(redis_url)
    with pytest.raises(StorageError, match="header"):
        await store.get("foreign")
    await store.close()


async def test_async_write_refused_by_redis_is_counted(redis_url: str) -> None:
    store = open_store(redis_url, durability=Durability.ASYNC)
    assert isinstance(store, RedisStore)
    await store.hset("h", {"f": b"1"})
    await store.set("h", b"x")  # SET replaces any type: fine
    await store.hset("h", {"f": b"1"})  # WRONGTYPE, discovered after returning
    await store.ping()
    await store.get("h")
    assert store.lost == 1
    await store.close()


# --- start ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_unreachable_at_start(scheme: str) -> None:
    port = free_port(cluster=True)
    store = open_store(f"{scheme}://127.0.0.1:{port}")
    with pytest.raises(StoreUnavailable, match=f"cannot reach redis at 127.0.0.1:{port}"):
        await store.start()
    with pytest.raises(StoreUnavailable):
        await store.get("k")  # reads fail at once too
    await store.close()


async def test_start_on_a_cluster(redis_cluster: RedisClusterProcesses) -> None:
    store = open_store(redis_cluster.url)
    await store.start()
    info = await store.info()
    assert info["backend"] == "redis cluster"
    assert sum(int(v) for k, v in info.items() if k.endswith(" keys")) >= 0
    await store.close()
