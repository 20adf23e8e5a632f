"""The ingestion of one partner's records, a batch at a time.

    parse + validate each line ──▶ resolve partner uids ──┬─▶ consent ──▶ merged ──▶ traits
         └─▶ rejects (reason, the batch goes on)           │      └─▶ rejects (by profile)
                                                           └─▶ not synced yet ──▶ pending

Each batch's records are merged by profile and written before the next batch is read
(``ingest``: files, pulls without an analytics engine; ``batch``: one HTTP batch or pulled
page). With an engine the writes are staged for it (``traits/staging.py``) and files are
ingested in SQL instead (``dmp/analytics/ingest_sql.py``). A sync stored while records were
being written to pending is caught by the recheck that follows the write; a later one by the
DMP's callback (``PendingRecords.resolve``).

Re-ingesting the same data changes nothing: attributes are set, events are keyed by
(name, ts), pending records by their content. Counts: ``accepted`` (applied to a profile),
``pending`` (kept until the partner uid is synced), ``rejected`` (with a reason). Every run's
counts also go to the funnel given (``dmp/funnel.py``): the outcomes, the attribute values
applied, the rejects by reason code; ``resolved`` is counted where pending records are applied
(``PendingRecords.resolve``).

Consent: a record whose profile's stored GDPR consent refuses the partner (``dmp/consent.py``:
the profile was seen under GDPR and the partner's latest answer is not a consent) is rejected
(``CONSENT_REASON``). A pending record is applied when its sync's callback is stored, which the
policy allowed for that partner a moment before.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from cookiematch.clock import Clock
from cookiematch.dmp.consent import StoredConsent
from cookiematch.dmp.funnel import Funnel
from cookiematch.dmp.ingest.pending import PendingRecords
from cookiematch.dmp.ingest.readers import Batch, Payload
from cookiematch.dmp.ingest.records import Checker, Record, attribute_values
from cookiematch.dmp.ingest.rejects import Reject, reject, reject_code
from cookiematch.dmp.ingest.resolver import Resolver
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore
from cookiematch.errors import RecordError
from cookiematch.storage.base import Store

OnReject = Callable[[Reject], None]
BATCH_RECORDS = 100_000
"""Records per batch of ``cookiematch dmp ingest`` (``--batch-size``)."""
BULK_GC_THRESHOLD = 1_000_000
"""``bulk_gc``: tracked allocations between young collections (Python's default is 700)."""
CONSENT_REASON = "consent: the profile's GDPR consent does not allow partner {partner!r}"


@contextlib.contextmanager
def bulk_gc() -> Iterator[None]:
    """Cyclic garbage collection tuned for a bulk load, for the block (restored after).

    A batch keeps hundreds of thousands of container objects alive until it is written, so
    Python's default thresholds run a collection every 700 allocations and a full one about
    every batch, each walking the whole batch again (about a third of the loop's time).
    Ingestion frees its objects by reference counting (it makes no cycles); the objects
    that exist before the block are frozen (left out of collections) and the young
    generation is collected every ``BULK_GC_THRESHOLD`` allocations instead.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(BULK_GC_THRESHOLD, 100, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@dataclass(slots=True)
class IngestReport:
    records: int = 0
    accepted: int = 0
    pending: int = 0
    rejected: int = 0
    profiles: int = 0  # profile writes (once per batch a profile is in)
    expired_events: int = 0  # events already older than their trait's TTL: not stored
    resolved: int = 0  # pending records applied because their sync arrived meanwhile
    values: int = 0  # attribute values (not null) of the accepted records
    reasons: dict[str, int] = field(default_factory=dict)  # rejected, by ``reject_code``
    rejects: list[Reject] = field(default_factory=list)  # kept only when asked

    def add(self, other: IngestReport) -> None:
        self.records += other.records
        self.accepted += other.accepted
        self.pending += other.pending
        self.rejected += other.rejected
        self.profiles += other.profiles
        self.expired_events += other.expired_events
        self.resolved += other.resolved
        self.values += other.values
        for code, n in other.reasons.items():
            self.reasons[code] = self.reasons.get(code, 0) + n
        self.rejects += other.rejects

    def counts(self) -> dict[str, int]:
        return {
            "records": self.records,
            "accepted": self.accepted,
            "pending": self.pending,
            "rejected": self.rejected,
            "profiles": self.profiles,
            "expired_events": self.expired_events,
            "resolved": self.resolved,
            "values": self.values,
        }

    def refused(self, code: str) -> None:
        self.rejected += 1
        self.reasons[code] = self.reasons.get(code, 0) + 1

    def count(self, funnel: Funnel, partner_id: str) -> None:
        """Into the funnel: the outcomes (``resolved`` is counted where records are applied)."""
        funnel.ingested(
            partner_id,
            {
                "records": self.records,
                "accepted": self.accepted,
                "pending": self.pending,
                "rejected": self.rejected,
                "expired": self.expired_events,
                "values": self.values,
            },
        )
        funnel.ingest_rejected(partner_id, self.reasons)


@dataclass(slots=True)
class _Parsed:
    """A batch's valid records (each with its line), and its counts so far."""

    report: IngestReport
    records: list[Record]
    lines: list[tuple[int, Payload]]
    source: str


class Ingestor:
    """Parses, resolves and writes batches of one partner's records."""

    def __init__(
        self,
        store: Store,
        traits: TraitStore,
        pending: PendingRecords,
        resolver: Resolver,
        *,
        clock: Clock = time.time,
        funnel: Funnel | None = None,
    ) -> None:
        self.store = store
        self.traits = traits
        self.pending = pending
        self.funnel = Funnel() if funnel is None else funnel  # what every run counts into
        self._resolver = resolver
        self._clock = clock
        self._checker = Checker(traits.catalog)
        self._consent = StoredConsent(store, clock)

    async def ingest(
        self,
        partner_id: str,
        batches: Iterable[Batch] | AsyncIterable[Batch],
        *,
        on_reject: OnReject | None = None,
        keep_rejects: bool = False,
    ) -> IngestReport:
        """Every batch in turn, each written before the next (``batch``); rejects go to
        ``on_reject`` and, if asked, into the report."""
        total = IngestReport()

        async def one(batch: Batch) -> None:
            total.add(await self._write_batch(partner_id, batch, on_reject, keep_rejects))

        if isinstance(batches, AsyncIterable):
            async for batch in batches:
                await one(batch)
        else:
            for batch in batches:
                await one(batch)
        total.count(self.funnel, partner_id)
        return total

    async def batch(
        self,
        partner_id: str,
        batch: Batch,
        on_reject: OnReject | None = None,
        keep_rejects: bool = False,
    ) -> IngestReport:
        """One batch, written (and its pending records rechecked) before it returns."""
        report = await self._write_batch(partner_id, batch, on_reject, keep_rejects)
        report.count(self.funnel, partner_id)
        return report

    async def _write_batch(
        self, partner_id: str, batch: Batch, on_reject: OnReject | None, keep_rejects: bool
    ) -> IngestReport:
        parsed = self._parse(batch, on_reject, keep_rejects)
        synced = await self._resolver.resolve(partner_id, {r.uid for r in parsed.records})
        synced = await self._consented(partner_id, parsed, synced, on_reject, keep_rejects)
        updates: dict[str, ProfileUpdate] = {}
        waiting: list[Record] = []
        self._merge(partner_id, parsed, synced, updates, waiting)
        await self._write_waiting(partner_id, waiting, parsed.report)
        if updates:
            parsed.report.profiles += len(updates)
            parsed.report.expired_events += await self.traits.apply(updates)
        return parsed.report

    def _parse(self, batch: Batch, on_reject: OnReject | None, keep_rejects: bool) -> _Parsed:
        """The batch's valid records; rejects are counted and handed on."""
        report = IngestReport(records=len(batch.lines))
        checker = self._checker
        if checker.catalog is not self.traits.catalog:
            checker = self._checker = Checker(self.traits.catalog)
        now = self._clock()
        records: list[Record] = []
        lines: list[tuple[int, Payload]] = []
        append, keep_line = records.append, lines.append
        parse_json, parse_row = checker.parse_json, checker.parse_row
        for line in batch.lines:
            number, payload = line
            try:
                if isinstance(payload, bytes):
                    append(parse_json(payload, now))
                else:
                    append(parse_row(payload, now))
                keep_line(line)
            except RecordError as exc:
                reason = str(exc)
                report.refused(reject_code(reason))
                refused = reject(batch.source, number, reason, payload)
                if on_reject is not None:
                    on_reject(refused)
                if keep_rejects:
                    report.rejects.append(refused)
        return _Parsed(report, records, lines, batch.source)

    async def _consented(
        self,
        partner_id: str,
        parsed: _Parsed,
        synced: dict[str, str],
        on_reject: OnReject | None,
        keep_rejects: bool,
    ) -> dict[str, str]:
        """``synced`` without the profiles whose stored consent refuses the partner; their
        records are taken out of ``parsed`` as rejects."""
        refused = await self._consent.refused(list(set(synced.values())), partner_id)
        if not refused:
            return synced
        reason = CONSENT_REASON.format(partner=partner_id)
        records: list[Record] = []
        lines: list[tuple[int, Payload]] = []
        report = parsed.report
        for record, line in zip(parsed.records, parsed.lines, strict=True):
            if synced.get(record.uid) not in refused:
                records.append(record)
                lines.append(line)
                continue
            report.refused("consent")
            refusal = reject(parsed.source, line[0], reason, line[1])
            if on_reject is not None:
                on_reject(refusal)
            if keep_rejects:
                report.rejects.append(refusal)
        parsed.records, parsed.lines = records, lines
        return {uid: dmp_uid for uid, dmp_uid in synced.items() if dmp_uid not in refused}

    @staticmethod
    def _merge(
        partner_id: str,
        parsed: _Parsed,
        synced: dict[str, str],
        updates: dict[str, ProfileUpdate],
        waiting: list[Record],
    ) -> None:
        """Merge the synced records into ``updates`` by profile (in order); the others wait."""
        values = 0
        for record in parsed.records:
            dmp_uid = synced.get(record.uid)
            if dmp_uid is None:
                waiting.append(record)
                continue
            values += attribute_values(record.attributes)
            update = updates.get(dmp_uid)
            if update is None:
                update = updates[dmp_uid] = ProfileUpdate(partner_id)
            update.merge(record.attributes, record.remove, record.events)
        report = parsed.report
        report.pending = len(waiting)
        report.accepted = len(parsed.records) - report.pending
        report.values = values

    async def _write_waiting(
        self, partner_id: str, waiting: list[Record], report: IngestReport
    ) -> None:
        """Keep the records whose partner uid is not synced, then apply those whose sync
        was stored meanwhile."""
        if waiting:
            await self.pending.add(partner_id, waiting)
            uids = list({r.uid: None for r in waiting})
            report.resolved += await self.pending.recheck(partner_id, uids)
