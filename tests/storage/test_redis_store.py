"""What is particular to the Redis backends: URLs, value layout, pipelining, start errors."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis._parsers import _AsyncRESP3Parser
from redis.asyncio import Redis
from redis.crc import key_slot

from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.storage import Durability, open_store
from cookiematch.storage import redis_codec as codec
from cookiematch.storage.base import Write
from cookiematch.storage.redis_store import KEYS_PER_SCRIPT, RedisStore, parse_cluster_url
from cookiematch.storage.redis_wire import Wire

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


async def test_a_scan_out_of_order_streams_in_constant_memory(
    redis_server: RedisServer, redis_url: str
) -> None:
    """In key order a scan holds every matching key name: its first page comes once SCAN has
    walked the whole keyspace. ``in_order=False`` hands each SCAN page on as it comes: the
    first after one SCAN, and the next SCAN only once it is read."""
    store = open_store(redis_url)
    try:
        for start in range(0, 20_000, 1000):
            await store.write_many([Write(f"k:{n:05d}", b"x") for n in range(start, start + 1000)])

        async def scans_before_first_page(in_order: bool) -> int:
            with redis_server.client() as client:
                client.config_resetstat()
                pages = aiter(store.scan_pages("k:", batch=100, in_order=in_order))
                first = await anext(pages)
                calls = int(client.info("commandstats")["cmdstat_scan"]["calls"])
                await pages.aclose()  # type: ignore[attr-defined]
            assert len(first) == 100
            return calls

        assert await scans_before_first_page(in_order=True) > 10  # 20,000 keys, ~1,000 a SCAN
        assert await scans_before_first_page(in_order=False) == 1
    finally:
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


async def test_swapped_maps_keep_their_latest_expiry(
    redis_server: RedisServer, redis_url: str
) -> None:
    """The swap scripts (``hswap_many``'s, one for several keys, and ``swap_together``'s, one
    a key) move a map's expiry out to its latest field's and never in: a new map gets it, a
    later field extends it, an earlier one leaves it, and a map left without one (persisted
    by another tool) gets it back."""
    store = open_store(redis_url)
    for swap in (
        lambda key, fields, ttl: store.hswap_many([(key, fields, ttl)]),
        lambda key, fields, ttl: store.swap_together([], [(key, fields, ttl)]),
    ):
        await swap("grown", {"a": b"1"}, 50.0)
        await swap("grown", {"b": b"1"}, 200.0)
        await swap("grown", {"c": b"1"}, 10.0)
        await swap("persisted", {"a": b"1"}, 50.0)
        with redis_server.client() as client:
            assert 49 <= client.ttl("persisted") <= 50
            client.persist("persisted")
        await swap("persisted", {"b": b"1"}, 30.0)
        with redis_server.client() as client:
            assert 199 <= client.ttl("grown") <= 200
            assert 29 <= client.ttl("persisted") <= 30
            client.delete("grown", "persisted")
    await store.close()


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


# --- the wire: raw RESP with hiredis, redis-py's pipeline as the fallback ---------------------


def wire_of(store: object) -> Wire:
    assert isinstance(store, RedisStore)
    return store._flusher.wire


async def test_a_field_map_write_is_one_command(redis_url: str) -> None:
    store = open_store(redis_url)
    assert isinstance(store, RedisStore)
    await store.hset("h", {"a": b"1", "b": b"2"}, ttl=50)
    await store.hset("h", {"c": b"3"})
    assert store.commands == 2
    assert wire_of(store).fast_flushes == 2
    assert await store.hgetall("h") == {"a": b"1", "b": b"2", "c": b"3"}
    await store.close()


async def test_many_fields_in_one_write(redis_url: str) -> None:
    """More arguments than one Lua ``unpack`` takes: the script writes them in chunks."""
    store = open_store(redis_url)
    fields = {f"f{i}": str(i).encode() for i in range(20_000)}
    await store.hset("big", fields, ttl=100)
    assert await store.hgetall("big") == fields
    await store.close()


async def test_swapped_maps_go_as_one_script_per_slice_of_keys(
    redis_server: RedisServer, redis_url: str
) -> None:
    """Standalone Redis: ``hswap_many`` sends one ``HSWAP_EXPIRING_EACH`` per
    ``KEYS_PER_SCRIPT`` keys, each key answered in its place, a map of more fields than one
    Lua ``unpack`` takes written whole; a flushed script cache is refilled."""
    store = open_store(redis_url)
    assert isinstance(store, RedisStore)
    big = {f"f{i}": b"%d" % i for i in range(1500)}
    items = [(f"k{i}", {"t": b"%d" % i}, 60.0) for i in range(KEYS_PER_SCRIPT * 2 + 1)]
    items[7] = ("big", big, None)
    assert await store.hswap_many(items) == [{}] * len(items)
    assert store.commands == 3
    with redis_server.client() as client:
        client.script_flush()
    again = [(key, {"t": b"new"}, 60.0) for key, _, _ in items]
    held = await store.hswap_many(again)
    assert held[0] == {"t": b"0"} and held[-1] == {"t": b"%d" % (len(items) - 1)}
    assert held[7] == {}  # "big" had no "t"
    assert await store.hgetall("big") == {**big, "t": b"new"}
    await store.close()


async def test_a_field_shared_by_many_maps_is_sent_once_a_script(
    redis_server: RedisServer, redis_url: str
) -> None:
    """Standalone Redis: items sharing one mapping of one field (a second's frequency checks)
    go as ``HSWAP_FIELD_EACH``, the field and value once per ``KEYS_PER_SCRIPT`` keys, each key
    answered in its place (a key given twice sees its earlier write, other fields are kept),
    each map's expiry moved out and never in, the script sent again whole to a server that
    lost it; the items between such runs as ``HSWAP_EXPIRING_EACH``."""
    store = open_store(redis_url)
    assert isinstance(store, RedisStore)
    await store.hset("k3", {"t": b"old", "u": b"kept"}, ttl=500)
    shared, later = {"t": b"1"}, {"t": b"2"}
    items = [(f"k{i}", shared, 60.0) for i in range(KEYS_PER_SCRIPT + 10)]
    items[5] = ("k3", shared, 60.0)
    items += [("x1", {"t": b"a"}, 60.0), ("x2", {"t": b"b"}, 60.0)]
    items += [("k0", later, 120.0), ("k1", later, 120.0)]
    before = store.commands
    held = await store.hswap_many(items)
    assert store.commands - before == 4  # 256 shared, 10 shared, the two others, 2 shared
    assert held[3] == {"t": b"old"} and held[5] == {"t": b"1"}
    assert held[0] == held[100] == held[-3] == {}
    assert held[-2] == held[-1] == {"t": b"1"}
    assert await store.hgetall("k3") == {"t": b"1", "u": b"kept"}
    assert await store.hgetall("k0") == {"t": b"2"}
    assert await store.hgetall("x2") == {"t": b"b"}
    with redis_server.client() as client:
        assert 499 <= client.ttl("k3") <= 500
        assert 119 <= client.ttl("k0") <= 120
        assert 59 <= client.ttl("k100") <= 60
        client.script_flush()  # a failed-over server without the script: sent again whole
    assert await store.hswap_many([("k0", shared, 60.0), ("k1", shared, 60.0)]) == [
        {"t": b"2"},
        {"t": b"2"},
    ]
    assert await store.hgetall("k1") == {"t": b"1"}
    await store.close()


async def test_swaps_of_one_key_from_two_clients_form_one_chain(redis_url: str) -> None:
    """``swap_many`` is one native ``SET … GET`` a key: swaps racing from two clients each
    answer a different earlier value, never one value twice (a read, then a write, could),
    and each call is one command a write."""
    stores = [open_store(redis_url), open_store(redis_url)]
    values = [b"%d" % i for i in range(300)]
    answers = await asyncio.gather(
        *(stores[i % 2].swap_many([Write("chain", v, 60.0)]) for i, v in enumerate(values))
    )
    held = [answer for [answer] in answers]
    final = await stores[0].get("chain")
    assert held.count(None) == 1  # the first swap found nothing
    assert final is not None
    assert sorted([h for h in held if h is not None] + [final]) == sorted(values)
    assert sum(store.commands for store in stores if isinstance(store, RedisStore)) == 301
    for store in stores:
        await store.close()


async def test_a_flushed_script_cache_is_refilled_in_order(
    redis_server: RedisServer, redis_url: str
) -> None:
    """NOSCRIPT: the script is sent again with its body, and a read of the same key queued
    after the write (in the same flush) is sent after it, so it sees the write."""
    store = open_store(redis_url, durability=Durability.ASYNC)
    await store.hset("h", {"a": b"1"})
    assert await store.hgetall("h") == {"a": b"1"}  # the script is cached, then flushed:
    with redis_server.client() as client:
        client.script_flush()
    await store.hset("h", {"b": b"2"})  # queued: returns at once
    assert await store.hgetall("h") == {"a": b"1", "b": b"2"}  # in the same flush
    with redis_server.client() as client:
        client.script_flush()
    assert await store.set_if_absent("p", b"v")
    assert not await store.set_if_absent("p", b"w")
    assert store.lost == 0
    await store.close()


async def test_without_hiredis_parsing_redis_py_carries_every_flush(redis_url: str) -> None:
    client = Redis.from_url(redis_url, parser_class=_AsyncRESP3Parser)
    store = RedisStore(client, cluster=False, address="test")
    await store.hset("h", {"a": b"1"}, ttl=10)
    await store.set("k", b"v")
    assert await store.hgetall("h") == {"a": b"1"}
    assert await store.get_many(["k", "nope"]) == [b"v", None]
    assert wire_of(store).fast is False
    assert wire_of(store).fast_flushes == 0
    await store.close()


def _slot_owner(cluster: RedisClusterProcesses, key: bytes) -> tuple[RedisServer, str]:
    for master in cluster.masters():
        with master.client() as client:
            try:
                client.execute_command("EXISTS", key)
            except redis.ResponseError:
                continue  # MOVED: not this one
            return master, client.execute_command("CLUSTER", "MYID").decode()
    raise AssertionError("no master owns the key's slot")


def _move_slot(cluster: RedisClusterProcesses, key: bytes, target: RedisServer) -> None:
    """Reshard ``key``'s slot onto ``target``, its keys migrated, as ``redis-cli`` does."""
    slot = key_slot(key)
    source, source_id = _slot_owner(cluster, key)
    with target.client() as dst, source.client() as src:
        target_id = dst.execute_command("CLUSTER", "MYID").decode()
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    for master in [target, source, *cluster.masters()]:
        with master.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


async def test_a_resharded_slot_is_followed(redis_cluster: RedisClusterProcesses) -> None:
    """MOVED (the client's slot map is stale): redis-py follows it and refreshes the map; the
    next flushes take the fast path to the slot's new master."""
    redis_cluster.flushall()
    store = open_store(redis_cluster.url)
    await store.start()
    key = b"{resharded}h"
    await store.hset(key.decode(), {"a": b"1"})
    home, _ = _slot_owner(redis_cluster, key)
    other = next(m for m in redis_cluster.masters() if m.port != home.port)
    _move_slot(redis_cluster, key, other)
    try:
        await store.hset(key.decode(), {"b": b"2"})
        assert await store.hgetall(key.decode()) == {"a": b"1", "b": b"2"}
        before = wire_of(store).fast_flushes
        for i in range(3):
            await store.hset(key.decode(), {f"c{i}": b"3"})
        assert wire_of(store).fast_flushes > before
        assert len(await store.hgetall(key.decode())) == 5
    finally:
        await store.close()
        _move_slot(redis_cluster, key, home)


async def test_a_client_without_a_socket_timeout_takes_the_fast_path(redis_url: str) -> None:
    """A redis-py client built elsewhere, with no socket timeout: its flushes have no time
    limit of the store's, and still go over raw RESP."""
    client = Redis.from_url(redis_url, socket_timeout=None)
    store = RedisStore(client, cluster=False, address="test")
    await store.set("k", b"v")
    assert await store.get("k") == b"v"
    assert wire_of(store).fast_flushes >= 2
    await store.close()
