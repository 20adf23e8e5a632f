"""The registry's stored records: one codec for the store, and records of earlier versions."""

from __future__ import annotations

import json

import msgspec
import pytest

from cookiematch.exchange import codec
from cookiematch.exchange.model import Buyer, Enforcement, UserList
from cookiematch.exchange.registry import BUYER_PREFIX, USER_LIST_PREFIX, ExchangeRegistry
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.secret import MASK, Secret
from cookiematch.storage import Store

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


async def test_stored_buyer_is_every_field_and_reads_back(store: Store) -> None:
    await ExchangeRegistry(store).put_buyer(FULL)
    stored = await store.get(BUYER_PREFIX + "dsp")
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
    ``redirect_url``, ``hosted_match`` and then only the keys that were set."""
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
    await store.set(BUYER_PREFIX + "old", json.dumps(minimal).encode())
    await store.set(BUYER_PREFIX + "dsp", json.dumps(full).encode())
    await store.set(USER_LIST_PREFIX + "777", json.dumps(user_list).encode())
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
    await store.set(f"{USER_LIST_PREFIX}5", b"null")  # the earlier tombstone: no owner named
    await store.set(f"{USER_LIST_PREFIX}6", b"null")
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
    await store.set(BUYER_PREFIX + "dsp", json.dumps(newer).encode())
    registry = ExchangeRegistry(store)
    await registry.refresh()
    read = registry.buyer("dsp")
    assert read is not None and codec.encode(read) == codec.encode(FULL)


async def test_a_stored_record_that_no_longer_validates_spares_the_others(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A redirect URL an earlier, looser rule accepted (a query without a path) must not stop
    the worker nor hide the other buyers: it keeps its last good value, else is left out,
    and is logged once per stored value."""
    registry = ExchangeRegistry(store)
    await registry.put_buyer(FULL)
    await registry.refresh()
    loose = {"nid": "dsp", "redirect_url": "https://dsp.example?id=", "hosted_match": False}
    await store.set(BUYER_PREFIX + "dsp", json.dumps(loose).encode())
    legacy = {"nid": "legacy", "redirect_url": "https://legacy.example?id=", "hosted_match": True}
    await store.set(BUYER_PREFIX + "legacy", json.dumps(legacy).encode())
    await store.set(BUYER_PREFIX + "good", codec.encode(Buyer("good", FULL.redirect_url)))
    for _ in range(3):
        await registry.refresh()
    kept = registry.buyer("dsp")
    assert kept is not None and codec.encode(kept) == codec.encode(FULL)  # the last good one
    assert registry.buyer("legacy") is None
    assert registry.buyer("good") is not None
    refused = [r.getMessage() for r in caplog.records if "is refused" in r.getMessage()]
    assert len(refused) == 2  # once per stored value, not once per refresh
    assert "exchange:buyer:legacy" in " ".join(refused) and "left out" in " ".join(refused)

    fresh = ExchangeRegistry(store)  # a worker starting now
    await fresh.refresh()
    assert fresh.buyer("dsp") is None and fresh.buyer("good") is not None
