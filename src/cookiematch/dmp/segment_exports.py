"""Exports of segments ("cookie pools"): a segment's members, as the analytics engine holds
them, sent to a configured destination (``dmp/exports/``) in its partner's IDs.

An export is one of the engine's jobs (``EngineRuns``): it opens the engine under its lease
(waiting up to ``EXPORT_WAIT`` for a running job), refreshes its profiles from the store, and
reads the delta from it (``dmp/analytics/export_sql.py``: the memberships, partner IDs and
consent marks it holds against what it recorded as sent); a file destination's file is
written by the engine. Without an engine (``[dmp.analytics] engine = "off"``) there is no
export: the configuration refuses destinations then, and ``deliver`` raises ``ConfigError``.

Incremental: members not sent yet are added, sent ones that left are removed (by the ID they
were sent with). Full: every current member is sent again, plus the same removes; a member
whose partner ID changed gets a remove of the old ID and an add of the new.

What the destination answered is recorded once every batch was sent: accepted adds, removes
accepted or rejected; rejected adds are left out (offered again next time); a batch that
never got a final answer changes nothing, so the next export sends it again (same content,
same batch id).

Erased browsers (``dmp/subjects.py``): the IDs on the removal list are sent as removes first,
in batches of their own, in either mode. Lifetimes (``dmp/lifetimes.py``): a member whose sent
ID is unchanged has its record rewritten once it is due.

Consent: a member whose stored GDPR consent (``dmp/consent.py``) does not allow the
destination's vendor (``gvl_vendor_id``) is left out (``no_consent``) and, if it was sent
before, removed. Members never seen under GDPR go as before.

The key-value store's record of what was sent (``ExportState``) is written batch by batch as
well: access and erasure read it, and the first export of a pair on the engine starts from it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cookiematch.clock import Clock
from cookiematch.dmp import keys, lifetimes
from cookiematch.dmp.analytics.engine import AnalyticsEngine
from cookiematch.dmp.analytics.export_sql import (
    ADD,
    KEEP,
    Delivered,
    ExportTarget,
)
from cookiematch.dmp.analytics.export_sql import ERASED as ERASED_ROW
from cookiematch.dmp.analytics.runs import EngineRuns
from cookiematch.dmp.consent import vendor_party
from cookiematch.dmp.exports.model import (
    Batch,
    BatchResult,
    Destination,
    FileDestination,
    FileFormat,
    Mode,
)
from cookiematch.dmp.exports.report import DeliveryReport
from cookiematch.dmp.exports.sinks import FileSink, Sink, make_sink, publish
from cookiematch.dmp.exports.state import ExportState
from cookiematch.dmp.transport import Transport
from cookiematch.errors import ConfigError, NotFound
from cookiematch.storage.base import Store

ERASED = ""
"""The uid of a remove from the removal list: the erased browser's uid is not kept."""

NO_ENGINE = (
    "exports read their deltas from the analytics engine: set [dmp.analytics] engine "
    '(DuckDB, embedded, needs no server; "spark" beyond one machine)'
)

EXPORT_WAIT = 60.0
"""Seconds an export on the analytics engine waits for another engine job (a recompute)."""


@dataclass
class _Pending:
    add: list[tuple[str, str]] = field(default_factory=list)  # (uid, destination id)
    remove: list[tuple[str, str]] = field(default_factory=list)  # uid ERASED: removal list

    @property
    def size(self) -> int:
        return len(self.add) + len(self.remove)


class SegmentExports:
    """The configured segments' exports to the configured destinations."""

    def __init__(
        self,
        store: Store,
        segment_ids: Iterable[str],
        destinations: Sequence[Destination],
        *,
        state_ttl: float = lifetimes.EXPORT_STATE_TTL,
        clock: Clock = time.time,
        engine: EngineRuns | None = None,
    ) -> None:
        self._store = store
        self._engine = engine  # None: no engine ("off"), no export
        self.segment_ids = frozenset(segment_ids)
        self.destinations: Mapping[str, Destination] = {d.id: d for d in destinations}
        self._state_ttl = state_ttl
        self._clock = clock

    def replace(self, segment_ids: Iterable[str], destinations: Sequence[Destination]) -> None:
        """Export these from now on (the admin API changed them)."""
        self.segment_ids = frozenset(segment_ids)
        self.destinations = {d.id: d for d in destinations}

    def vendors(self) -> list[int]:
        """The GVL vendor IDs of the destinations: whose consent the DMP marks on profiles."""
        found = {d.gvl_vendor_id for d in self.destinations.values()}
        return sorted(v for v in found if v is not None)

    def state(self, segment: str, destination_id: str) -> ExportState:
        """What was sent of ``segment`` to a destination (kept ``state_ttl``)."""
        return ExportState(self._store, segment, destination_id, self._state_ttl)

    def destination(self, destination_id: str) -> Destination:
        found = self.destinations.get(destination_id)
        if found is None:
            raise NotFound(f"no destination {destination_id!r}")
        return found

    async def export(
        self,
        segment_id: str,
        destination_id: str,
        transport: Transport,
        mode: Mode = Mode.INCREMENTAL,
    ) -> DeliveryReport:
        """Export a configured segment to a configured destination, by their ids."""
        if segment_id not in self.segment_ids:
            raise NotFound(f"no segment {segment_id!r}")
        destination = self.destination(destination_id)
        return await self.deliver(segment_id, destination, make_sink(destination, transport), mode)

    async def last_reports(self, segment_id: str) -> dict[str, DeliveryReport]:
        """Destination id -> the report of the segment's last export there (if there was one)."""
        found: dict[str, DeliveryReport] = {}
        for destination_id in self.destinations:
            report = await self.state(segment_id, destination_id).last_report()
            if report is not None:
                found[destination_id] = report
        return found

    async def deliver(
        self, segment: str, destination: Destination, sink: Sink, mode: Mode = Mode.INCREMENTAL
    ) -> DeliveryReport:
        """Export ``segment`` to ``destination`` through ``sink``: the delta read from the
        engine, sent, recorded, reported."""
        if self._engine is None:
            raise ConfigError(NO_ENGINE)
        return await self._deliver_from_engine(self._engine, segment, destination, sink, mode)

    async def _flush(
        self,
        segment: str,
        mode: Mode,
        pending: _Pending,
        limit: int,
        sink: Sink,
        state: ExportState,
        report: DeliveryReport,
        delivered: Delivered | None = None,
    ) -> _Pending:
        """Send one batch of at most ``limit`` (removes first); return what is left (what the
        destination answered is added to ``delivered``, if given)."""
        removes = pending.remove[:limit]
        adds = pending.add[: limit - len(removes)]
        batch = Batch(
            segment,
            report.destination,
            mode,
            add=tuple(did for _, did in adds),
            remove=tuple(did for _, did in removes),
            add_uids=tuple(uid for uid, _ in adds),
            remove_uids=tuple(uid for uid, _ in removes),
        )
        result = await sink.send(batch)
        report.batches += 1
        report.retries += max(0, result.attempts - 1)
        report.sent += batch.size
        if not result.delivered:
            report.failed += batch.size
            if result.error:
                report.errors.append(f"batch {batch.id}: {result.error}")
        else:
            if result.error:
                report.errors.append(f"batch {batch.id}: {result.error}")
            accepted = {uid: did for uid, did in adds if did not in result.rejected}
            removed = sum(1 for _, did in removes if did not in result.rejected)
            report.accepted += len(accepted) + removed
            report.rejected += batch.size - len(accepted) - removed
            report.added += len(accepted)
            report.removed += removed
            erased = [did for uid, did in removes if uid == ERASED]
            report.erased += len(erased)
            dropped = [uid for uid, _ in removes if uid != ERASED]
            await state.record(accepted, dropped)
            await state.removed(erased)
            if delivered is not None:
                delivered.added += accepted.items()
                delivered.dropped += dropped
                delivered.erased += erased
        return _Pending(pending.add[len(adds) :], pending.remove[len(removes) :])

    # --- on the analytics engine ------------------------------------------------------------

    async def _deliver_from_engine(
        self, runs: EngineRuns, segment: str, destination: Destination, sink: Sink, mode: Mode
    ) -> DeliveryReport:
        started = time.perf_counter()
        now = self._clock()
        report = DeliveryReport(
            segment=segment, destination=destination.id, mode=mode.value, started_at=now
        )
        state = self.state(segment, destination.id)
        vendor = destination.gvl_vendor_id
        target = ExportTarget(
            destination.id, segment, destination.partner,
            None if vendor is None else vendor_party(vendor),
            full=mode is Mode.FULL, now=now, due_before=now - state.ttl / 2,
            membership_ttl=runs.memberships.ttl,
        )  # fmt: skip
        erased = await state.removals()
        async with runs.engine(wait=EXPORT_WAIT) as engine:
            await runs.refresh(engine, now)
            await self._seed(engine, state, now)
            counts = await asyncio.to_thread(engine.export_delta, target, erased)
            report.members, report.no_consent = counts.members, counts.no_consent
            report.unmatched, report.unchanged = counts.unmatched, counts.unchanged
            if isinstance(destination, FileDestination):
                files = sink if isinstance(sink, FileSink) else FileSink(destination)
                path = files.file_path(segment, mode)
                csv = destination.format is FileFormat.CSV
                await asyncio.to_thread(engine.write_export, f"{path}.partial", csv)
                await asyncio.to_thread(publish, path)
                sink = _Written()
            delivered = await self._send(engine, segment, destination, sink, mode, state, report)
            await asyncio.to_thread(engine.commit_export, destination.id, segment, delivered, now)
        report.seconds = round(time.perf_counter() - started, 3)
        await state.save_report(report)
        return report

    async def _send(
        self,
        engine: AnalyticsEngine,
        segment: str,
        destination: Destination,
        sink: Sink,
        mode: Mode,
        state: ExportState,
        report: DeliveryReport,
    ) -> Delivered:
        """Send the engine's pending delta through ``sink`` in batches (the removal list's in
        batches of their own); return what the destination answered."""
        delivered = Delivered()
        limit = destination.delivery.batch_size
        pending = _Pending()
        erasing = True  # the removal list's rows come first
        await sink.open(segment, mode)
        rows = engine.export_rows(limit)
        while (chunk := await asyncio.to_thread(next, rows, None)) is not None:
            kept: dict[str, str] = {}
            for action, uid, did in chunk:
                if erasing and action != ERASED_ROW:
                    erasing = False
                    while pending.size:
                        pending = await self._flush(
                            segment, mode, pending, limit, sink, state, report, delivered
                        )
                if action == KEEP:
                    kept[uid] = did
                elif action == ADD:
                    pending.add.append((uid, did))
                else:
                    pending.remove.append((ERASED if action == ERASED_ROW else uid, did))
            if kept:  # still sent: a fresh lifetime
                await state.record(kept, [])
                delivered.kept += kept
            while pending.size >= limit:
                pending = await self._flush(
                    segment, mode, pending, limit, sink, state, report, delivered
                )
        while pending.size:
            pending = await self._flush(
                segment, mode, pending, limit, sink, state, report, delivered
            )
        await sink.close(report.failed == 0)
        return delivered

    async def _seed(self, engine: AnalyticsEngine, state: ExportState, now: float) -> None:
        """The first export of a pair on the engine: what the key-value store recorded as sent
        (by an export before the engine was configured) is what the engine starts from."""
        name = f"exported:{state.destination}:{state.segment}"
        if await asyncio.to_thread(engine.checkpoint, name) is not None:
            return
        written: list[float] = []
        seeded = Delivered(added_at=written)
        for shard in range(keys.SHARDS):
            for uid, (raw, remaining) in (await state.shard_entries(shard)).items():
                seeded.added.append((uid, raw.decode()))
                # as written then; an entry without a lifetime is due a fresh one at once
                written.append(0.0 if remaining is None else now + remaining - state.ttl)
        if seeded.added:
            await asyncio.to_thread(
                engine.commit_export, state.destination, state.segment, seeded, now
            )
        await asyncio.to_thread(engine.set_checkpoint, name, now)


class _Written:
    """The sink of a file the engine wrote: every batch is in it already."""

    async def open(self, segment: str, mode: Mode) -> None:
        return None

    async def send(self, batch: Batch) -> BatchResult:
        return BatchResult(True)

    async def close(self, complete: bool) -> None:
        return None
