"""GDPR consent kept on the profile, and what reads it: the marks a request leaves (consents,
refusals, a withdrawn DMP cookie, the export vendors'), the other tags a page may fire, the
records ingestion rejects and the members exports leave out (a real SQLite store, the privacy
policy asked for real)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from cookiematch.dmp import keys
from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.runs import EngineRuns
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.change_marks import mark_writes
from cookiematch.dmp.consent import (
    CONSENT_MAX_AGE,
    HOST,
    ConsentMark,
    StoredConsent,
    allows,
    vendor_party,
)
from cookiematch.dmp.events import EventType, ImpressionEvent
from cookiematch.dmp.exports.model import Delivery, HttpDestination
from cookiematch.dmp.exports.sinks import HttpSink
from cookiematch.dmp.ingest import Ingestor
from cookiematch.dmp.ingest.readers import Batch
from cookiematch.dmp.ingest.rejects import Reject
from cookiematch.dmp.model import Client, OtherTag
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.segments import Segment, parse_rule
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.service import DmpService, WaitingRecords
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.staging import TraitStaging
from cookiematch.dmp.traits.writes import TraitStore
from cookiematch.privacy.policy import Reason
from cookiematch.storage import Store
from cookiematch.storage.base import FieldWrite, Write
from protocol.tcf_builder import core, id_bits, vendor_bitfield

from .helpers import ANALYTICS_VENDOR, EMAIL_VENDOR, NOW, ORDERS_VENDOR, FakeClock, consent
from .helpers import make_service as _make_service
from .scripted_transport import ScriptedTransport, Sleeps

DEST_VENDOR = 5  # the export destination's GVL vendor ID
TC_LAST_UPDATED = 1_700_086_400.0  # tcf_builder's LastUpdated
EVERYTHING = core(  # purposes 1-4; the partners' vendors and the destination's
    purpose_consents=id_bits([1, 2, 3, 4], 24),
    vendor_consents=vendor_bitfield(10, [ANALYTICS_VENDOR, EMAIL_VENDOR, ORDERS_VENDOR, 5]),
)
NOT_EMAIL_NOR_DEST = core(  # a later answer: consent withdrawn from email and the destination
    purpose_consents=id_bits([1, 2, 3, 4], 24),
    vendor_consents=vendor_bitfield(10, [ANALYTICS_VENDOR, ORDERS_VENDOR]),
)
NOTHING = core(
    purpose_consents=id_bits([], 24),
    purpose_legitimate_interests=id_bits([], 24),
    vendor_consents=vendor_bitfield(10, []),
)
SHOP = Client(
    "shop",
    tags=(
        OtherTag("analytics_px", "https://a.example/px.gif", gvl_vendor_id=ANALYTICS_VENDOR),
        OtherTag("email_px", "https://email.example/px.gif", gvl_vendor_id=EMAIL_VENDOR),
        OtherTag("own_px", "https://shop.example/px.gif"),
    ),
)


def make_service(
    store: Store,
    clock: FakeClock,
    traits: TraitStore | None = None,
    waiting: WaitingRecords | None = None,
) -> DmpService:
    return _make_service(
        store, clock, traits=traits, clients=[SHOP], export_vendors=[DEST_VENDOR, DEST_VENDOR],
        waiting=waiting,
    )  # fmt: skip


@pytest.fixture
def dmp(store: Store, clock: FakeClock, traits: TraitStore) -> DmpService:
    return make_service(store, clock, traits)


def mark(refused: bool = False, at: float = NOW) -> bytes:
    return msgspec.json.encode([at, TC_LAST_UPDATED, refused])


# --- the rule ---------------------------------------------------------------------------------

LATER = TC_LAST_UPDATED + CONSENT_MAX_AGE


@pytest.mark.parametrize(
    ("fields", "party", "now", "allowed"),
    [
        ({}, "email", NOW, True),  # never seen under GDPR: nothing refuses
        ({}, None, NOW, True),
        ({HOST: mark(), "email": mark()}, "email", NOW, True),
        ({HOST: mark(), "email": mark()}, "email", LATER, True),
        ({HOST: mark(), "email": mark()}, "email", LATER + 1, False),  # older than 13 months
        ({HOST: mark(), "email": mark(refused=True)}, "email", NOW, False),
        ({HOST: mark(), "analytics": mark()}, "email", NOW, False),  # never consented
        ({HOST: mark(refused=True), "email": mark()}, "email", NOW, False),  # cookie withdrawn
        ({"email": mark()}, "email", NOW, False),  # no consent for the DMP itself
        ({HOST: mark(), "email": mark()}, None, NOW, False),  # a party without a vendor ID
        ({HOST: mark(), "email": b"garbage"}, "email", NOW, False),
        ({HOST: msgspec.json.encode([NOW, TC_LAST_UPDATED]), "email": mark()}, "email", NOW, True),
        ({HOST: mark(), vendor_party(5): mark()}, "v:5", NOW, True),
    ],
)
def test_what_the_marks_allow(
    fields: dict[str, bytes], party: str | None, now: float, allowed: bool
) -> None:
    assert allows(fields, party, now) is allowed


# --- the marks a request leaves -----------------------------------------------------------------


async def test_a_consented_sync_marks_every_answer_and_the_export_vendors(
    dmp: DmpService,
) -> None:
    result = await dmp.sync(SHOP, None, consent(dmp, gdpr="1", gdpr_consent=EVERYTHING))
    assert result.dmp_uid is not None
    found = await dmp.consent_marks.get(result.dmp_uid)
    yes = ConsentMark(NOW, TC_LAST_UPDATED)
    no = ConsentMark(NOW, TC_LAST_UPDATED, refused=True)
    assert found.dmp_cookie == yes
    assert found.partners == {"analytics": yes, "email": yes, "orders": yes, "dsp": no}
    assert found.vendors == {str(DEST_VENDOR): yes}
    shown = msgspec.json.decode(msgspec.json.encode(found))
    assert shown["partners"]["dsp"] == {"at": NOW, "tc_last_updated": TC_LAST_UPDATED,
                                        "refused": True}  # fmt: skip
    assert shown["partners"]["email"] == {"at": NOW, "tc_last_updated": TC_LAST_UPDATED}


async def test_a_later_refusal_replaces_a_partners_consent(
    dmp: DmpService, store: Store, clock: FakeClock
) -> None:
    first = await dmp.sync(SHOP, None, consent(dmp, gdpr="1", gdpr_consent=EVERYTHING))
    uid = first.dmp_uid
    assert uid is not None
    clock.now += 60
    later = await dmp.sync(SHOP, uid, consent(dmp, gdpr="1", gdpr_consent=NOT_EMAIL_NOR_DEST))
    assert later.decision.reason("email") is Reason.VENDOR
    found = await dmp.consent_marks.get(uid)
    assert found.partners["email"] == ConsentMark(NOW + 60, TC_LAST_UPDATED, refused=True)
    assert found.partners["analytics"] == ConsentMark(NOW + 60, TC_LAST_UPDATED)
    assert found.vendors[str(DEST_VENDOR)].refused
    fields = await store.hgetall(keys.consent_key(uid))
    assert not allows(fields, "email", clock()) and allows(fields, "analytics", clock())
    assert not allows(fields, vendor_party(DEST_VENDOR), clock())


async def test_signals_without_gdpr_leave_the_marks_alone(dmp: DmpService) -> None:
    first = await dmp.sync(SHOP, None, consent(dmp, gdpr="1", gdpr_consent=EVERYTHING))
    uid = first.dmp_uid
    assert uid is not None
    before = await dmp.consent_marks.get(uid)
    await dmp.sync(SHOP, uid, consent(dmp, gdpr="0"))
    await dmp.sync(SHOP, uid, consent(dmp, us_privacy="1YYN"))
    assert await dmp.consent_marks.get(uid) == before


async def test_a_withdrawn_dmp_cookie_marks_the_profile_refused_until_consent_comes_back(
    dmp: DmpService, store: Store, clock: FakeClock
) -> None:
    uid = (await dmp.sync(SHOP, None, consent(dmp, gdpr="1", gdpr_consent=EVERYTHING))).dmp_uid
    assert uid is not None
    clock.now += 60
    refused = consent(dmp, gdpr="1", gdpr_consent=NOTHING)
    await dmp.withdraw(uid, refused)
    found = await dmp.consent_marks.get(uid)
    assert found.dmp_cookie == ConsentMark(NOW + 60, TC_LAST_UPDATED, refused=True)
    fields = await store.hgetall(keys.consent_key(uid))
    assert not any(allows(fields, p, clock()) for p in ("analytics", "email", "v:5"))
    await dmp.withdraw(uid, consent(dmp, gdpr="0"))  # an allowed cookie withdraws nothing
    assert (await dmp.consent_marks.get(uid)).dmp_cookie == found.dmp_cookie

    clock.now += 60
    await dmp.sync(SHOP, uid, consent(dmp, gdpr="1", gdpr_consent=EVERYTHING))
    fields = await store.hgetall(keys.consent_key(uid))
    assert all(allows(fields, p, clock()) for p in ("analytics", "email", "v:5"))


async def test_a_refusal_without_a_tc_string_has_no_last_updated(dmp: DmpService) -> None:
    await dmp.withdraw("some-browser", consent(dmp, gdpr="1"))
    found = await dmp.consent_marks.get("some-browser")
    assert found.dmp_cookie == ConsentMark(NOW, None, refused=True)


async def test_callbacks_and_impressions_mark_the_host_and_the_export_vendors(
    dmp: DmpService,
) -> None:
    allowed = consent(dmp, gdpr="1", gdpr_consent=EVERYTHING)
    await dmp.callback("analytics", "browser-1", "A-1", consent=allowed)
    await dmp.impression("browser-2", ImpressionEvent(EventType.IMP, "c1"), allowed)
    await dmp.impression("browser-3", ImpressionEvent(EventType.IMP, "c1"))
    yes = ConsentMark(NOW, TC_LAST_UPDATED)
    one, two = await dmp.consent_marks.get("browser-1"), await dmp.consent_marks.get("browser-2")
    assert (one.dmp_cookie, one.partners, one.vendors) == (yes, {"analytics": yes}, {"5": yes})
    assert (two.dmp_cookie, two.partners, two.vendors) == (yes, {}, {"5": yes})
    assert (await dmp.consent_marks.get("browser-3")).empty


async def test_a_consented_callback_writes_its_match_and_marks_in_one_store_call(
    store: Store,
    clock: FakeClock,
    traits: TraitStore,
    ingestor: Ingestor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The match, the consent marks, the change mark, and the read of the records waiting
    for the partner ID (after the write): one store call."""
    dmp = make_service(store, clock, traits, waiting=ingestor.pending)
    calls: list[tuple[list[str], list[str], list[str], list[str]]] = []
    inner = store.swap_together

    async def swap_together(
        writes: Sequence[Write],
        field_writes: Sequence[FieldWrite],
        read_after: Sequence[str],
        also: Sequence[FieldWrite],
    ) -> list[dict[str, bytes]]:
        calls.append((
            [w.key for w in writes],
            [key for key, _, _ in field_writes],
            list(read_after),
            [key for key, _, _ in also],
        ))  # fmt: skip
        return await inner(writes, field_writes, read_after, also)

    for name in ("set", "hset", "write_many", "hset_many", "write_together", "hget", "hgetall"):
        monkeypatch.setattr(store, name, None)  # any other write (or the read before) would fail
    monkeypatch.setattr(store, "swap_together", swap_together)
    allowed = consent(dmp, gdpr="1", gdpr_consent=EVERYTHING)
    await dmp.callback("analytics", "browser-1", "A-1", consent=allowed)
    await dmp.callback("analytics", "browser-2", "A-2", consent=consent(dmp))

    def marked(uid: str) -> list[str]:  # the change mark the engine's refresh reads
        return [key for key, _, _ in mark_writes([uid], NOW)]

    assert calls == [  # the partner ID replaced is answered; the marks are only written
        ([keys.reverse_key("analytics", "A-1")], [keys.partners_key("browser-1")],
         [keys.pending_key("analytics", "A-1")],
         [keys.consent_key("browser-1"), *marked("browser-1")]),
        ([keys.reverse_key("analytics", "A-2")], [keys.partners_key("browser-2")],
         [keys.pending_key("analytics", "A-2")], marked("browser-2")),
    ]  # fmt: skip
    monkeypatch.undo()
    assert await dmp.matches.dmp_uid_for("analytics", "A-1") == "browser-1"
    assert (await dmp.matches.partners("browser-2"))["analytics"].uid == "A-2"
    assert (await dmp.consent_marks.get("browser-1")).partners == {
        "analytics": ConsentMark(NOW, TC_LAST_UPDATED)
    }


# --- the client's other tags --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "sec_gpc", "tags", "storage"),
    [
        ({}, None, ["analytics_px", "email_px", "own_px"], True),
        ({"gdpr": "0"}, None, ["analytics_px", "email_px", "own_px"], True),
        ({"gdpr": "1", "gdpr_consent": NOT_EMAIL_NOR_DEST}, None, ["analytics_px"], True),
        ({"gdpr": "1", "gdpr_consent": NOTHING}, None, [], False),
        ({"gdpr": "1"}, None, [], False),
        ({"us_privacy": "1YYN"}, None, [], True),
        ({}, "1", [], True),
    ],
)
async def test_the_other_tags_a_page_may_fire(
    dmp: DmpService,
    params: dict[str, str],
    sec_gpc: str | None,
    tags: list[str],
    storage: bool,
) -> None:
    result = await dmp.sync(SHOP, None, consent(dmp, sec_gpc, **params))
    assert result.allowed_tags() == tags and result.storage is storage
    assert set(result.refused_tags()) == {"analytics_px", "email_px", "own_px"} - set(tags)
    if params.get("gdpr_consent") == NOT_EMAIL_NOR_DEST:
        assert result.refused_tags() == {
            "email_px": Reason.VENDOR, "own_px": Reason.NO_VENDOR_ID,
        }  # fmt: skip


# --- ingestion ----------------------------------------------------------------------------------


def records(*uids: str) -> Batch:
    lines = [(i, msgspec.json.encode({"uid": u, "attributes": {"tier": "gold"}})) for i, u in
             enumerate(uids)]  # fmt: skip
    return Batch("request", lines)


async def browsers(dmp: DmpService, clock: FakeClock) -> dict[str, str]:
    """Four browsers synced with email: never under GDPR, consented, consent withdrawn from
    email, the DMP cookie withdrawn. Email uid -> DMP uid."""
    quiet = consent(dmp)
    everything = consent(dmp, gdpr="1", gdpr_consent=EVERYTHING)
    found: dict[str, str] = {}
    for name, signals in (("quiet", quiet), ("yes", everything), ("no_email", everything),
                          ("withdrawn", everything)):  # fmt: skip
        uid = (await dmp.sync(SHOP, None, signals)).dmp_uid
        assert uid is not None
        await dmp.matches.record("email", uid, f"E-{name}", clock())
        found[f"E-{name}"] = uid
    await dmp.sync(SHOP, found["E-no_email"], consent(dmp, gdpr="1",
                                                      gdpr_consent=NOT_EMAIL_NOR_DEST))  # fmt: skip
    await dmp.withdraw(found["E-withdrawn"], consent(dmp, gdpr="1", gdpr_consent=NOTHING))
    return found


async def test_ingestion_rejects_the_records_of_profiles_that_refuse_the_partner(
    dmp: DmpService, ingestor: Ingestor, clock: FakeClock
) -> None:
    uids = await browsers(dmp, clock)
    seen: list[Reject] = []
    report = await ingestor.batch(
        "email", records(*uids, "E-unsynced"), on_reject=seen.append, keep_rejects=True
    )
    assert (report.records, report.accepted, report.pending, report.rejected) == (5, 2, 1, 2)
    reason = "consent: the profile's GDPR consent does not allow partner 'email'"
    assert [(r.line, r.reason) for r in report.rejects] == [(2, reason), (3, reason)]
    assert seen == report.rejects and '"E-no_email"' in seen[0].raw
    tiers = {
        name: (await dmp.profile_reader.snapshot(uid)).attributes.get("tier")
        for name, uid in uids.items()
    }
    assert tiers == {"E-quiet": "gold", "E-yes": "gold", "E-no_email": None,
                     "E-withdrawn": None}  # fmt: skip

    # a file: each batch reads its profiles' consent
    files = await ingestor.ingest("email", [records(*uids), records(*uids)], keep_rejects=True)
    assert (files.accepted, files.rejected, files.profiles) == (4, 4, 4)
    assert {r.reason for r in files.rejects} == {reason}


# --- exports ------------------------------------------------------------------------------------


def destination(vendor: int | None) -> HttpDestination:
    delivery = Delivery(batch_size=10, max_attempts=1, backoff_seconds=0)
    return HttpDestination("dest", "http://dest.example/in", b"s" * 32, "email", delivery, vendor)


SYNCED_EMAIL = Segment("seg", parse_rule({"synced": "email"}))


def engine_exports(
    store: Store, clock: FakeClock, tmp_path: Path, vendor: int | None
) -> tuple[SegmentExports, EngineRuns]:
    """Exports of ``seg`` (browsers synced with email) read from a DuckDB file."""
    settings = AnalyticsSettings(str(tmp_path / "dmp.duckdb"))
    runs = EngineRuns(
        lambda: DuckDBEngine(settings), store, Memberships(store), TraitCatalog(),
        holder="test", clock=clock, staging=TraitStaging(settings.staging_directory),
    )  # fmt: skip
    dest = [destination(vendor)]
    return SegmentExports(store, [SYNCED_EMAIL.id], dest, clock=clock, engine=runs), runs


async def test_an_export_leaves_out_the_members_without_the_vendors_consent(
    dmp: DmpService, store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    uids = await browsers(dmp, clock)
    exports, runs = engine_exports(store, clock, tmp_path, DEST_VENDOR)
    await runs.recompute([SYNCED_EMAIL])
    assert exports.vendors() == [DEST_VENDOR]
    transport = ScriptedTransport()
    sink = HttpSink(destination(DEST_VENDOR), transport, clock=clock, sleep=Sleeps())
    report = await exports.deliver("seg", destination(DEST_VENDOR), sink)
    assert (report.members, report.no_consent, report.added) == (4, 2, 2)
    assert sorted(transport.bodies()[0]["add"]) == ["E-quiet", "E-yes"]  # type: ignore[arg-type]

    # the consented browser withdraws its consent from the destination: it is removed
    clock.now += 60
    await dmp.sync(SHOP, uids["E-yes"], consent(dmp, gdpr="1", gdpr_consent=NOT_EMAIL_NOR_DEST))
    clock.now += 60  # the engine reads the change marks of the minutes gone by
    again = await exports.deliver("seg", destination(DEST_VENDOR), sink)
    assert (again.no_consent, again.removed, again.unchanged) == (3, 1, 1)
    assert transport.bodies()[-1]["remove"] == ["E-yes"]
    judged = StoredConsent(store, clock)
    assert await judged.refused(list(uids.values()), vendor_party(DEST_VENDOR)) == {
        uids["E-yes"],
        uids["E-no_email"],
        uids["E-withdrawn"],
    }


async def test_under_gdpr_a_destination_without_a_vendor_id_gets_nobody(
    dmp: DmpService, store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    await browsers(dmp, clock)
    exports, runs = engine_exports(store, clock, tmp_path, None)
    await runs.recompute([SYNCED_EMAIL])
    transport = ScriptedTransport()
    sink = HttpSink(destination(None), transport, clock=clock, sleep=Sleeps())
    report = await exports.deliver("seg", destination(None), sink)
    assert (report.members, report.no_consent, report.added) == (4, 3, 1)
    assert transport.bodies()[0]["add"] == ["E-quiet"]  # never seen under GDPR


async def test_the_export_vendors_are_judged_for_export_and_personalisation(
    store: Store, clock: FakeClock
) -> None:
    """A destination's vendor needs the purposes of ``sync`` and of ``personalise``."""
    service = _make_service(store, clock, clients=[SHOP], export_vendors=[DEST_VENDOR])
    sync_only = core(
        purpose_consents=id_bits([1], 24),
        purpose_legitimate_interests=id_bits([], 24),
        vendor_consents=vendor_bitfield(10, [DEST_VENDOR]),
    )
    result = await service.sync(SHOP, None, consent(service, gdpr="1", gdpr_consent=sync_only))
    assert result.dmp_uid is not None and result.store_id.allowed
    found = await service.consent_marks.get(result.dmp_uid)
    assert found.vendors[str(DEST_VENDOR)].refused
