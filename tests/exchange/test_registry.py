"""The registry's stored records on every backend: one codec for the store, records of earlier
versions, and a refresh that reads the registry's maps and nothing else."""

from __future__ import annotations

import json

import msgspec
import pytest

from cookiematch.exchange import codec
from cookiematch.exchange.model import Buyer, Enforcement, UserList
from cookiematch.exchange.registry import (
    BUYERS_KEY,
    CHANGED_KEY,
    LEGACY_BUYER_PREFIX,
    LEGACY_USER_LIST_PREFIX,
    MOVED_KEY,
    USER_LISTS_KEY,
    ExchangeRegistry,
)
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.secret import MASK, Secret
from cookiematch.storage import Store, connect_store
from cookiematch.storage.change_watch import FULL_READ_SECONDS
from storage.redis_servers import RedisServer

from support.stores import backend_store, shared_cluster, shared_redis  # noqa: F401

PUSH = "http://dsp.example/push?t=%%GOOGLE_PUSH%%"
FULL = Buyer(
    "dsp",
    RedirectTemplate.compile("http://dsp.example/m?id="),
    hosted_match=True,
    hosted_match_writes_per_second=5.0,
    bidder_url="http://dsp.example/bid",
    push_url=RedirectTemplate.compile(PUSH),
    pixel_matching=True,
    require_hosted_match=True,
    max_qps=20.0,
    max_match_tags_per_second=50.0,
    enforcement=Enforcement(on_low_response_rate=("alert", "suspend_pixel_matching")),
    optout_webhook_url="https://dsp.example/optout",
    optout_webhook_secret=Secret("webhook-secret-0123456789"),
    key_version=3,
)


@pytest.fixture
def store(backend_store: Store) -> Store:  # noqa: F811 (the fixture, by name)
    return backend_store


class Monotonic:
    """A monotonic clock that moves only when a test advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_stored_buyer_is_every_field_and_reads_back(store: Store) -> None:
    await ExchangeRegistry(store).put_buyer(FULL)
    stored = await store.hget(BUYERS_KEY, "dsp")
    assert stored is not None
    assert msgspec.json.decode(stored) == {
        "nid": "dsp",
        "redirect_url": "http://dsp.example/m?id=",
        "hosted_match": True,
        "hosted_match_writes_per_second": 5.0,
        "bidder_url": "http://dsp.example/bid",
        "push_url": PUSH,
        "pixel_matching": True,
        "require_hosted_match": True,
        "require_user_lists": [],
        "max_qps": 20.0,
        "max_match_tags_per_second": 50.0,
        "enforcement": json.loads(msgspec.json.encode(FULL.enforcement)),
        "gvl_vendor_id": None,
        "optout_webhook_url": "https://dsp.example/optout",
        "optout_webhook_secret": "webhook-secret-0123456789",  # the store holds it for workers
        "key_version": 3,
    }
    other = ExchangeRegistry(store)
    await other.refresh()
    read = other.buyer("dsp")
    assert read is not None and codec.encode(read) == codec.encode(FULL)
    assert read.push_url is not None and read.push_url.url == PUSH  # compiled again
    assert read.optout_webhook_secret == "webhook-secret-0123456789"
    assert "webhook-secret" not in repr(read)


def test_what_people_see_masks_the_secret() -> None:
    shown = msgspec.json.decode(codec.encode_masked({"buyers": [FULL]}))
    assert shown["buyers"][0]["optout_webhook_secret"] == MASK
    assert shown["buyers"][0]["optout_webhook_url"] == "https://dsp.example/optout"


async def test_records_of_the_earlier_format_still_load(store: Store) -> None:
    """Before the entities were Structs, a buyer was written with json.dumps of ``nid``,
    ``redirect_url``, ``hosted_match`` and then only the keys that were set (and one key
    each, moved into the maps by the first refresh)."""
    minimal = {"nid": "old", "redirect_url": "http://old.example/p?id=", "hosted_match": False}
    full = {
        "nid": "dsp",
        "redirect_url": "http://dsp.example/m?id=",
        "hosted_match": True,
        "hosted_match_writes_per_second": 5,
        "bidder_url": "http://dsp.example/bid",
        "push_url": PUSH,
        "pixel_matching": True,
        "require_hosted_match": True,
        "max_qps": 20,
    }
    user_list = {"id": 777, "owner": "old", "closed": True, "membership_days": 7}
    await store.set(LEGACY_BUYER_PREFIX + "old", json.dumps(minimal).encode())
    await store.set(LEGACY_BUYER_PREFIX + "dsp", json.dumps(full).encode())
    await store.set(LEGACY_USER_LIST_PREFIX + "777", json.dumps(user_list).encode())
    registry = ExchangeRegistry(store)
    await registry.refresh()

    old = registry.buyer("old")
    assert old is not None
    assert old.redirect_url.url == "http://old.example/p?id="
    assert codec.encode(old) == codec.encode(Buyer("old", old.redirect_url))  # the defaults
    dsp = registry.buyer("dsp")
    earlier = msgspec.structs.replace(
        FULL,
        max_match_tags_per_second=None,
        enforcement=None,
        optout_webhook_url=None,
        optout_webhook_secret=None,
        key_version=None,
    )
    assert dsp is not None and codec.encode(dsp) == codec.encode(earlier)
    assert registry.user_list(777) == UserList(777, "old", closed=True, membership_days=7)


async def test_tombstone_hides_a_configured_entry(store: Store) -> None:
    configured = Buyer("gone", RedirectTemplate.compile("http://gone.example/"))
    await ExchangeRegistry(store, [configured]).delete_buyer("gone")
    restarted = ExchangeRegistry(store, [configured])
    await restarted.refresh()
    assert restarted.buyer("gone") is None


async def test_a_deleted_list_keeps_its_owner_and_an_earlier_tombstone_names_none(
    store: Store,
) -> None:
    configured = UserList(5, "file")
    await store.set(f"{LEGACY_USER_LIST_PREFIX}5", b"null")  # the earlier tombstone: no owner
    await store.set(f"{LEGACY_USER_LIST_PREFIX}6", b"null")
    registry = ExchangeRegistry(store, user_lists=[configured])
    await registry.put_user_list(UserList(7, "api"))
    await registry.delete_user_list(7)
    restarted = ExchangeRegistry(store, user_lists=[configured])
    await restarted.refresh()
    assert [restarted.user_list(i) for i in (5, 6, 7)] == [None, None, None]
    holders = [await restarted.list_holder(i) for i in (5, 6, 7, 8)]
    assert holders == ["file", None, "api", None]  # the file names 5's owner
    assert (restarted.held_lists("file"), restarted.held_lists("api")) == (1, 1)


@pytest.mark.parametrize(
    ("record", "key"),
    [
        (b'{"nid": "x", "redirect_url": "http://x/?%%GOOGLE_NOPE%%"}', "$.redirect_url"),
        (b'{"nid": "x y", "redirect_url": "http://x/"}', "$.nid"),
        (b'{"nid": "x", "redirect_url": "http://x/", "colour": 1}', "colour"),
    ],
)
def test_decode_validates_as_the_configuration_does(record: bytes, key: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=key.replace("$", r"\$")):
        codec.decode(record, Buyer)


async def test_a_record_a_newer_version_wrote_loads_without_its_new_keys(store: Store) -> None:
    newer = {**json.loads(codec.encode(FULL)), "added_later": {"x": 1}}
    await store.hset(BUYERS_KEY, {"dsp": json.dumps(newer).encode()})
    registry = ExchangeRegistry(store)
    await registry.refresh()
    read = registry.buyer("dsp")
    assert read is not None and codec.encode(read) == codec.encode(FULL)


async def test_a_stored_record_that_no_longer_validates_spares_the_others(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A redirect URL an earlier, looser rule accepted (a query without a path) must not stop
    the worker nor hide the other buyers: it keeps its last good value, else is left out,
    and is logged once per stored value. Written as an earlier version's worker writes, with
    no change token: read at the refreshes that read the maps whatever the token."""
    clock = Monotonic()
    registry = ExchangeRegistry(store, monotonic=clock)
    await registry.put_buyer(FULL)
    await registry.refresh()
    loose = {"nid": "dsp", "redirect_url": "https://dsp.example?id=", "hosted_match": False}
    legacy = {"nid": "legacy", "redirect_url": "https://legacy.example?id=", "hosted_match": True}
    good = codec.encode(Buyer("good", FULL.redirect_url))
    await store.hset(
        BUYERS_KEY,
        {"dsp": json.dumps(loose).encode(), "legacy": json.dumps(legacy).encode(), "good": good},
    )
    for _ in range(3):
        clock.now += FULL_READ_SECONDS
        await registry.refresh()
    kept = registry.buyer("dsp")
    assert kept is not None and codec.encode(kept) == codec.encode(FULL)  # the last good one
    assert registry.buyer("legacy") is None
    assert registry.buyer("good") is not None
    refused = [r.getMessage() for r in caplog.records if "is refused" in r.getMessage()]
    assert len(refused) == 2  # once per stored value, not once per refresh
    assert f"{BUYERS_KEY}[legacy]" in " ".join(refused) and "left out" in " ".join(refused)

    fresh = ExchangeRegistry(store)  # a worker starting now
    await fresh.refresh()
    assert fresh.buyer("dsp") is None and fresh.buyer("good") is not None


async def test_an_entry_stored_unchanged_stays_the_same_object(store: Store) -> None:
    """A refresh (every 2 s) decodes only what changed: an unchanged buyer stays the object
    the cookie match prepared its pieces from (``exchange/common_match.py``)."""
    writer, reader = ExchangeRegistry(store), ExchangeRegistry(store)
    await writer.put_buyer(FULL)
    await writer.put_user_list(UserList(7, "dsp"))
    await reader.refresh()
    buyer, user_list = reader.buyer("dsp"), reader.user_list(7)
    await reader.refresh()
    assert reader.buyer("dsp") is buyer and reader.user_list(7) is user_list
    await writer.put_buyer(msgspec.structs.replace(FULL, max_qps=1.0))
    await reader.refresh()
    changed = reader.buyer("dsp")
    assert changed is not buyer and changed is not None and changed.max_qps == 1.0
    assert reader.user_list(7) is user_list


async def test_a_change_is_read_at_the_next_refresh_and_one_without_a_token_later(
    store: Store,
) -> None:
    """A change made through another worker comes with a new token: the next refresh reads
    it. One written without a token (an earlier version's worker, a ``store copy`` into a
    live store) is read once the maps are ``FULL_READ_SECONDS`` old, not before."""
    clock = Monotonic()
    writer, reader = ExchangeRegistry(store), ExchangeRegistry(store, monotonic=clock)
    await reader.refresh()
    await writer.put_user_list(UserList(7, "dsp"))
    token = await store.get(CHANGED_KEY)
    assert token is not None
    await reader.refresh()
    assert reader.user_list(7) == UserList(7, "dsp")
    await writer.delete_user_list(7)
    assert await store.get(CHANGED_KEY) not in (None, token)
    await reader.refresh()
    assert reader.user_list(7) is None

    await store.hset(USER_LISTS_KEY, {"8": codec.encode(UserList(8, "dsp"))})  # no token
    clock.now += FULL_READ_SECONDS - 1
    await reader.refresh()
    assert reader.user_list(8) is None
    clock.now += 1
    await reader.refresh()
    assert reader.user_list(8) == UserList(8, "dsp")


async def test_the_earlier_keys_are_moved_once_and_the_maps_win(store: Store) -> None:
    """The first refresh moves an earlier version's keys into the maps and deletes them; a
    field this version wrote is kept; once moved, no registry looks for them again."""
    newer = codec.encode(Buyer("dsp", FULL.redirect_url, hosted_match=True))
    await store.hset(BUYERS_KEY, {"dsp": newer})
    older = {"nid": "dsp", "redirect_url": "http://dsp.example/old?id=", "hosted_match": False}
    await store.set(LEGACY_BUYER_PREFIX + "dsp", json.dumps(older).encode())
    await store.set(LEGACY_BUYER_PREFIX + "old", codec.encode(Buyer("old", FULL.redirect_url)))
    await store.set(LEGACY_USER_LIST_PREFIX + "9", codec.encode(UserList(9, "old")))
    registry = ExchangeRegistry(store)
    await registry.refresh()

    assert registry.buyer("dsp") is not None and codec.encode(registry.buyer("dsp")) == newer
    assert registry.buyer("old") is not None and registry.user_list(9) == UserList(9, "old")
    assert await store.hget(BUYERS_KEY, "dsp") == newer
    assert await store.hget(USER_LISTS_KEY, "9") == codec.encode(UserList(9, "old"))
    assert [key async for key, _ in store.scan("exchange:buyer:")] == []
    assert [key async for key, _ in store.scan("exchange:user_list:")] == []
    assert await store.get(MOVED_KEY) is not None
    assert await ExchangeRegistry(store).move_legacy() == 0  # done for the store


async def test_a_refresh_reads_the_registry_not_the_keyspace(
    shared_redis: RedisServer,  # noqa: F811 (the fixture, by name)
) -> None:
    """On Redis a prefix scan walks every key of the database: a refresh (every 2 s in each
    worker) reads the registry's change token, and its maps only when the token changed,
    however many other keys the store holds."""
    with shared_redis.client() as client:
        client.flushall()
        client.mset({f"hm:{{browser-{n}}}:dsp": b"x" for n in range(5000)})
    store = await connect_store(shared_redis.url)
    try:
        registry = ExchangeRegistry(store, [Buyer("file", FULL.redirect_url)])
        await registry.put_buyer(FULL)
        await registry.put_user_list(UserList(7, "dsp"))
        await registry.refresh()  # the first: the earlier version's keys looked for once
        with shared_redis.client() as client:
            client.config_resetstat()
            for _ in range(3):
                await registry.refresh()
            unchanged = client.info("commandstats")
        await ExchangeRegistry(store).put_user_list(UserList(8, "dsp"))  # another worker
        with shared_redis.client() as client:
            client.config_resetstat()
            await registry.refresh()
            changed = client.info("commandstats")

        def ours(called: dict[str, dict[str, int]]) -> dict[str, int]:
            skipped = ("cmdstat_config", "cmdstat_info")
            return {n: c["calls"] for n, c in called.items() if not n.startswith(skipped)}

        assert ours(unchanged) == {"cmdstat_get": 3}  # the token, three times; no SCAN
        assert ours(changed) == {"cmdstat_get": 1, "cmdstat_hgetall": 3}  # then the maps
        assert [b.nid for b in registry.buyers()] == ["dsp", "file"]
        assert registry.user_list(7) == UserList(7, "dsp")
        assert registry.user_list(8) == UserList(8, "dsp")
    finally:
        await store.close()
