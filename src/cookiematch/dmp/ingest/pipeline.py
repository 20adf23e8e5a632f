"""The ingestion of one partner's records, a batch at a time.

    parse + validate each line ──▶ resolve partner uids (get_many) ──┬─▶ traits (hset_many)
         └─▶ rejects (reason, the batch goes on)                      └─▶ pending (not synced)

A sync stored while records were being written to pending is caught by the recheck that
follows (``batch``: at its end; ``ingest``: every ``RECHECK_EVERY`` pending uids and at the
end); a later one by the DMP's callback (``PendingRecords.resolve``).

Re-ingesting the same data changes nothing: attributes are set, events are keyed by
(name, ts), pending records by their content. Counts: ``accepted`` (applied to a profile),
``pending`` (kept until the partner uid is synced), ``rejected`` (with a reason).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field

from cookiematch.dmp.ingest.pending import PendingRecords
from cookiematch.dmp.ingest.readers import Batch
from cookiematch.dmp.ingest.records import Record, parse_json, parse_row
from cookiematch.dmp.ingest.rejects import Reject, reject
from cookiematch.dmp.ingest.resolver import Resolver
from cookiematch.dmp.traits import ProfileUpdate, TraitStore
from cookiematch.errors import RecordError
from cookiematch.storage.base import Store

OnReject = Callable[[Reject], None]
RECHECK_EVERY = 50_000
"""``ingest`` rechecks pending partner uids once this many wait (and at the end), not after
every batch: the recheck reads the match table once the pending writes are committed, which
would make every batch wait for the store's writer."""


@dataclass(slots=True)
class IngestReport:
    records: int = 0
    accepted: int = 0
    pending: int = 0
    rejected: int = 0
    profiles: int = 0  # profiles written (a profile in several batches counts each time)
    expired_events: int = 0  # events already older than their trait's TTL: not stored
    resolved: int = 0  # pending records applied because their sync arrived meanwhile
    rejects: list[Reject] = field(default_factory=list)  # kept only when asked

    def add(self, other: IngestReport) -> None:
        self.records += other.records
        self.accepted += other.accepted
        self.pending += other.pending
        self.rejected += other.rejected
        self.profiles += other.profiles
        self.expired_events += other.expired_events
        self.resolved += other.resolved
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
        }


class Ingestor:
    """Parses, resolves and writes batches of one partner's records."""

    def __init__(
        self,
        store: Store,
        traits: TraitStore,
        pending: PendingRecords,
        resolver: Resolver,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.traits = traits
        self.pending = pending
        self._resolver = resolver
        self._clock = clock

    async def ingest(
        self,
        partner_id: str,
        batches: Iterable[Batch] | AsyncIterable[Batch],
        *,
        on_reject: OnReject | None = None,
        keep_rejects: bool = False,
    ) -> IngestReport:
        """Every batch in turn; rejects go to ``on_reject`` and, if asked, into the report."""
        total = IngestReport()
        waiting: dict[str, None] = {}  # partner uids left pending, not rechecked yet

        async def one(batch: Batch) -> None:
            report, uids = await self._batch(partner_id, batch, on_reject, keep_rejects)
            total.add(report)
            waiting.update(dict.fromkeys(uids))
            if len(waiting) >= RECHECK_EVERY:
                total.resolved += await self.pending.recheck(partner_id, list(waiting))
                waiting.clear()

        if isinstance(batches, AsyncIterable):
            async for batch in batches:
                await one(batch)
        else:
            for batch in batches:
                await one(batch)
        if waiting:
            total.resolved += await self.pending.recheck(partner_id, list(waiting))
        return total

    async def batch(
        self,
        partner_id: str,
        batch: Batch,
        on_reject: OnReject | None = None,
        keep_rejects: bool = False,
    ) -> IngestReport:
        """One batch, its pending records rechecked before it returns."""
        report, waiting = await self._batch(partner_id, batch, on_reject, keep_rejects)
        if waiting:
            report.resolved = await self.pending.recheck(partner_id, waiting)
        return report

    async def _batch(
        self,
        partner_id: str,
        batch: Batch,
        on_reject: OnReject | None,
        keep_rejects: bool,
    ) -> tuple[IngestReport, list[str]]:
        """Write one batch; return its report and the partner uids whose records now wait."""
        report = IngestReport(records=len(batch.lines))
        catalog = self.traits.catalog
        now = self._clock()
        records: list[Record] = []
        for number, payload in batch.lines:
            try:
                if isinstance(payload, bytes):
                    records.append(parse_json(payload, catalog, now))
                else:
                    records.append(parse_row(payload, catalog, now))
            except RecordError as exc:
                report.rejected += 1
                refused = reject(batch.source, number, str(exc), payload)
                if on_reject is not None:
                    on_reject(refused)
                if keep_rejects:
                    report.rejects.append(refused)
        synced = await self._resolver.resolve(partner_id, {r.uid for r in records})
        updates: dict[str, ProfileUpdate] = {}
        waiting: list[Record] = []
        for record in records:
            dmp_uid = synced.get(record.uid)
            if dmp_uid is None:
                waiting.append(record)
                continue
            update = updates.get(dmp_uid)
            if update is None:
                update = updates[dmp_uid] = ProfileUpdate(partner_id)
            update.merge(record.attributes, record.remove, record.events)
        report.expired_events = await self.traits.apply(updates)
        report.accepted = len(records) - len(waiting)
        report.profiles = len(updates)
        report.pending = len(waiting)
        if not waiting:
            return report, []
        await self.pending.add(partner_id, waiting)
        return report, list({r.uid: None for r in waiting})
