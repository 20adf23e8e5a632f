"""Access and erasure of one DMP browser (``dmp/subjects.py``) on SQLite, Redis and Redis Cluster:
every record listed with its lifetime, every key and field naming the browser gone, each export
destination sent the removal by its next export, other browsers untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from cookiematch.config import load_config
from cookiematch.config.dmp import DmpConfig
from cookiematch.dmp import keys
from cookiematch.dmp.consent import RequestConsent
from cookiematch.dmp.events import EventType, ImpressionEvent
from cookiematch.dmp.ingest.readers import Batch
from cookiematch.dmp.ingest.records import Record
from cookiematch.dmp.retired import member_index_key
from cookiematch.dmp.service import CallbackStatus, DmpService
from cookiematch.dmp.subjects import KINDS
from cookiematch.errors import InvalidSubject
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.privacy.subjects import SubjectReport
from cookiematch.protocol.privacy import PrivacySignals
from cookiematch.roots.dmp import DmpCore, build_core, new_dmp_uid
from cookiematch.storage import Store
from protocol.tcf_builder import core_of_today, id_bits, vendor_bitfield

from .helpers import FakeClock
from .scripted_transport import ScriptedTransport
from .segment_stores import clocked_store, wall_clock  # noqa: F401
from .store_scan import mentions
from support.stores import shared_cluster, shared_redis  # noqa: F401

ANALYTICS_VENDOR = 7
# consent for both partners (vendors 7 and 9) and both destinations (11 and 12), dated today
# (a stored consent counts 13 months from its LastUpdated)
TC = core_of_today(
    purpose_consents=id_bits([1, 2, 3, 4], 24), vendor_consents=vendor_bitfield(20, [7, 9, 11, 12])
)
CONFIG = """
[dmp]

[[dmp.clients]]
id = "shop"

[[dmp.partners]]
id = "analytics"
sync_url = "https://analytics.example/s?r=${CALLBACK_URL}"
gvl_vendor_id = 7

[[dmp.partners]]
id = "dsp"
sync_url = "https://dsp.example/s?r=${CALLBACK_URL}"
gvl_vendor_id = 9

[[dmp.segments]]
id = "dsp_synced"
rule = { synced = "dsp" }

[[dmp.segments]]
id = "buyers"
rule = { event = "purchase" }

[[dmp.destinations]]
id = "dsp_api"
url = "https://dsp.example/segments"
secret = "destination-secret-0123456789"
partner = "dsp"
gvl_vendor_id = 11

[[dmp.destinations]]
id = "uid_api"
url = "https://uids.example/segments"
secret = "destination-secret-0123456789"
gvl_vendor_id = 12
"""


def dmp_config(directory: Path) -> DmpConfig:
    path = directory / "dmp.toml"
    path.write_text(CONFIG)
    dmp = load_config(path).dmp
    assert dmp is not None
    return dmp


class Dmp:
    """The core and the browser-facing service, wired as the server wires them."""

    def __init__(self, dmp: DmpConfig, store: Store, clock: FakeClock) -> None:
        self.config = dmp
        self.clock = clock
        self.core: DmpCore = build_core(dmp, store, clock=clock)
        self.service = DmpService(
            store, dmp.settings(), dmp.partner_models(), dmp.client_models(),
            matches=self.core.matches, traits=self.core.traits,
            profile_reader=self.core.profile_reader, memberships=self.core.segments.memberships,
            policy=PrivacyPolicy(), on_match=[self.core.ingestor.pending.resolve], clock=clock,
            new_uid=new_dmp_uid, worker="w1", export_vendors=self.core.exports.vendors(),
        )  # fmt: skip
        self.transport = ScriptedTransport()

    def consent(self, **params: str) -> RequestConsent:
        return self.service.consent(PrivacySignals(**params))

    async def browser(self, analytics: str, dsp: str) -> str:
        """A browser's whole story: a consented sync, two partners' callbacks, in-band data,
        an impression, ingested traits; returns its DMP uid."""
        service, shop = self.service, self.service.clients["shop"]
        consented = self.consent(gdpr="1", gdpr_consent=TC)
        uid = (await service.sync(shop, None, consented)).dmp_uid
        assert uid is not None
        stored = CallbackStatus.STORED
        assert await service.callback("analytics", uid, analytics, consent=consented) is stored
        assert await service.callback("dsp", uid, dsp, consent=consented) is stored
        kv = "age:30,tier:gold"
        assert await service.inband("analytics", uid, analytics, kv, consent=consented) is stored
        await service.impression(uid, ImpressionEvent(EventType.IMP, "c1", "site1"))
        record = f'{{"uid": "{dsp}", "attributes": {{"tier": "gold"}}, '
        record += f'"events": [{{"name": "purchase", "ts": {int(self.clock()) - 3600}}}]}}'
        batch = Batch("crm.jsonl", [(1, record.encode())])
        assert (await self.core.ingestor.ingest("dsp", [batch])).accepted == 1
        return uid

    async def export(self, segment: str, destination: str) -> dict[str, object]:
        """One export; the body of the single batch it sent ({} when it sent none)."""
        self.transport.requests.clear()
        await self.core.exports.export(segment, destination, self.transport)
        bodies = self.transport.bodies()
        assert len(bodies) <= 1
        return bodies[0] if bodies else {}


@pytest.fixture
def dmp(clocked_store: Store, wall_clock: FakeClock, tmp_path: Path) -> Dmp:  # noqa: F811
    return Dmp(dmp_config(tmp_path), clocked_store, wall_clock)


def kinds(report: SubjectReport) -> dict[str, int]:
    found: dict[str, int] = {}
    for record in report.records:
        found[record.kind] = found.get(record.kind, 0) + 1
    return found


async def test_access_lists_every_record_with_its_lifetime(dmp: Dmp) -> None:
    uid = await dmp.browser("A-1", "D-1")
    await dmp.core.recompute()  # on the analytics engine, which owns the traits
    await dmp.export("dsp_synced", "dsp_api")
    report = await dmp.core.subjects.access(uid)
    assert report.role == "dmp" and report.subject == uid
    assert kinds(report) == {
        "partner_id": 2,
        "event": 1,
        "inband": 2,
        "consent_mark": 5,  # the DMP cookie, both partners, both destinations' vendors
        "trait": 2,  # an attribute and an event
        "segment": 2,
        "partner_id_reverse": 2,
        "export_sent": 1,
    }
    assert all((r.expires_in_seconds or 0) > 0 for r in report.records)  # each one bounded
    sent = next(r for r in report.records if r.kind == "export_sent")
    assert sent.value == "D-1" and sent.field == uid
    by_partner = await dmp.core.subjects.access("partner:dsp:D-1")
    assert kinds(by_partner) == kinds(report)


async def test_erasure_leaves_no_trace_and_queues_the_removals(dmp: Dmp) -> None:
    uid = await dmp.browser("A-1", "D-1")
    other = await dmp.browser("A-2", "D-2")
    await dmp.core.recompute()  # on the analytics engine, which owns the traits
    assert (await dmp.export("dsp_synced", "dsp_api"))["add"] in (["D-1", "D-2"], ["D-2", "D-1"])
    await dmp.export("buyers", "uid_api")
    before = await mentions(dmp.core.store, uid, "A-1", "D-1")
    assert before and any(hit.startswith("dmpx:") for hit in before)

    report = await dmp.core.subjects.erase(uid)
    assert set(report.erased) == set(KINDS)
    assert report.erased["export_sent"] == 2 and report.erased["segment"] == 2
    assert report.erased["partner_id"] == 2 and report.erased["partner_id_reverse"] == 2
    assert sorted(report.notified) == ["dsp_api (segment dsp_synced)", "uid_api (segment buyers)"]
    # Nothing names the browser but the removal list of the destination that receives DMP uids
    # (the ID it must be told to remove); the partner's IDs only there too.
    assert await mentions(dmp.core.store, uid) == [f"dmpx:{{buyers:uid_api}}:gone[{uid}]"]
    assert await mentions(dmp.core.store, "D-1") == ["dmpx:{dsp_synced:dsp_api}:gone[D-1]"]
    assert await mentions(dmp.core.store, "A-1") == []
    assert (await dmp.core.subjects.access(uid)).records == []

    removal = await dmp.export("dsp_synced", "dsp_api")
    assert (removal["add"], removal["remove"]) == ([], ["D-1"])
    assert (await dmp.export("buyers", "uid_api"))["remove"] == [uid]
    assert await mentions(dmp.core.store, uid, "A-1", "D-1") == []
    assert await dmp.export("dsp_synced", "dsp_api") == {}  # sent once

    # the other browser is as it was
    assert kinds(await dmp.core.subjects.access(other))["export_sent"] == 2
    await dmp.core.recompute()  # the engine dropped the erased browser with its memberships
    assert await dmp.core.segments.sizes() == {"dsp_synced": 1, "buyers": 1}
    again = await dmp.core.subjects.erase(uid)
    assert sum(again.erased.values()) == 0 and again.notified == []


async def test_a_partner_id_is_a_subject_too(dmp: Dmp) -> None:
    uid = await dmp.browser("A-1", "D-1")
    waiting = Record("D-9", {"tier": "silver"})
    await dmp.core.ingestor.pending.add("dsp", [waiting])
    unmatched = await dmp.core.subjects.access("partner:dsp:D-9")
    assert kinds(unmatched) == {"pending_record": 1}
    erased = await dmp.core.subjects.erase("partner:dsp:D-9")
    assert erased.erased["pending_record"] == 1 and erased.erased["partner_id"] == 0
    assert await mentions(dmp.core.store, "D-9") == []

    report = await dmp.core.subjects.erase("partner:analytics:A-1")
    assert report.subject == "partner:analytics:A-1" and report.erased["partner_id"] == 2
    assert await mentions(dmp.core.store, uid, "A-1", "D-1") == []


@pytest.mark.parametrize(
    "subject",
    ["", "not-a-uid", "A" * 23, "partner:", "partner:dsp", "partner:dsp:", "partner:nope:x",
     "partner:dsp:with space", "partner:bad id:x"],
)  # fmt: skip
async def test_an_identifier_in_neither_form_is_refused(dmp: Dmp, subject: str) -> None:
    with pytest.raises(InvalidSubject):
        await dmp.core.subjects.access(subject)
    with pytest.raises(InvalidSubject):
        await dmp.core.subjects.erase(subject)


async def test_the_retired_member_index_is_reported_and_erased(dmp: Dmp) -> None:
    """A store an earlier version wrote keeps its member index until ``migrate-to-engine``
    deletes it or it lapses: the browser's entries there are listed and erased."""
    uid = await dmp.browser("A-1", "D-1")
    other = await dmp.browser("A-2", "D-2")
    store = dmp.core.store
    for each in (uid, other):
        index = member_index_key("buyers", keys.shard_of(each))
        await store.hset(index, {each: b"1700000000"}, ttl=3600.0)
    report = await dmp.core.subjects.access(uid)
    assert [r.key for r in report.records if r.kind == "segment_member"] == [
        member_index_key("buyers", keys.shard_of(uid))
    ]
    erased = await dmp.core.subjects.erase(uid)
    assert erased.erased["segment_member"] == 1
    assert await mentions(store, uid, "A-1") == []
    other_index = member_index_key("buyers", keys.shard_of(other))
    assert other in await store.hgetall(other_index)
