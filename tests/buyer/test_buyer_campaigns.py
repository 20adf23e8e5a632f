"""Campaign choice and the bid-time look-up's newest entry, against their plain definitions."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from hypothesis import given
from hypothesis import strategies as st

from cookiematch.buyer.campaigns import Audience, Campaign, Choice, choose
from cookiematch.buyer.matchtable import Lookup, MatchEntry
from cookiematch.protocol.openrtb import Banner, Format, Imp, Pmp

DOMAINS = ("a.example", "b.example", "c.example")
SIZES = st.sampled_from([None, 0, 90, 250, 300, 728])


def reference_choose(
    campaigns: Sequence[Campaign], imp: Imp, *, matched: bool, blocked: Collection[str] = ()
) -> Choice | None:
    """The rule as docs/buyer.md states it, one campaign at a time."""
    if imp.pmp is not None and imp.pmp.private_auction:
        return None
    if imp.bidfloorcur.upper() != "USD":
        return None
    best: Choice | None = None
    for campaign in campaigns:
        price = campaign.price(matched)
        if price is None or price <= 0 or price < imp.bidfloor:
            continue
        if any(domain in blocked for domain in campaign.adomain):
            continue
        size = campaign.size_for(imp)
        if size is None:
            continue
        if best is None or price > best.price:
            best = Choice(campaign, price, size)
    return best


campaigns = st.lists(
    st.builds(
        Campaign,
        id=st.sampled_from(["c1", "c2", "c3"]),
        adm=st.just("<p>ad</p>"),
        audience=st.sampled_from(Audience),
        bid_price=st.sampled_from([0.0, 0.5, 1.0, 4.0]),
        matched_bid_price=st.sampled_from([None, 0.0, 0.5, 4.0]),
        adomain=st.lists(st.sampled_from(DOMAINS), max_size=2).map(tuple),
        w=st.sampled_from([None, 300, 728]),
        h=st.sampled_from([None, 250, 90]),
    ),
    max_size=4,
)
banners = st.none() | st.builds(
    Banner,
    w=SIZES,
    h=SIZES,
    format=st.none() | st.lists(st.builds(Format, w=SIZES, h=SIZES), max_size=3),
)
imps = st.builds(
    Imp,
    id=st.just("1"),
    banner=banners,
    bidfloor=st.sampled_from([0.0, 0.03, 0.5, 1.0, 5.0]),
    bidfloorcur=st.sampled_from(["USD", "usd", "Usd", "EUR", ""]),
    pmp=st.none() | st.builds(Pmp, private_auction=st.sampled_from([0, 1])),
)


@given(campaigns, imps, st.booleans(), st.frozensets(st.sampled_from(DOMAINS)))
def test_choose_follows_the_rule(
    offered: list[Campaign], imp: Imp, matched: bool, blocked: frozenset[str]
) -> None:
    expected = reference_choose(offered, imp, matched=matched, blocked=blocked)
    assert choose(offered, imp, matched=matched, blocked=blocked) == expected


entries = st.none() | st.builds(
    MatchEntry,
    gid=st.just("QUJD"),
    uid=st.binary(min_size=16, max_size=16),
    cver=st.integers(0, 3),
    updated_at=st.integers(0, 5),
)


@given(entries, entries)
def test_newest_is_the_latest_entry_the_gids_on_a_tie(
    by_gid: MatchEntry | None, by_uid: MatchEntry | None
) -> None:
    found = [e for e in (by_gid, by_uid) if e is not None]
    expected = max(found, key=lambda e: e.updated_at) if found else None
    assert Lookup(by_gid, by_uid).newest is expected
