"""The DMP's scheduled jobs besides the recompute (``dmp/segments/schedule.py``): a partner's
pull (``dmp/pull.py``) every ``pull_interval_minutes``, and a segment's incremental export to a
destination (``dmp/segment_exports.py``) every ``export_interval_minutes``. Both run in a
``Schedule`` (``dmp/schedule.py``): one worker at a time, each run's record kept.
"""

from __future__ import annotations

from cookiematch.dmp import keys
from cookiematch.dmp.ingest import Ingestor
from cookiematch.dmp.pull import Cursors, PullSource, pull
from cookiematch.dmp.schedule import Counts, Job
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.transport import PullTransport, Transport

__all__ = ["export_job", "export_job_name", "pull_job", "pull_job_name"]


def pull_job_name(partner_id: str) -> str:
    return f"pull:{partner_id}"


def export_job_name(segment_id: str, destination_id: str) -> str:
    return f"export:{segment_id}:{destination_id}"


def pull_job(
    source: PullSource,
    interval: float,
    ingestor: Ingestor,
    cursors: Cursors,
    transport: PullTransport,
) -> Job:
    """Pull ``source`` from its stored cursor to the end, every ``interval`` seconds."""

    async def work() -> Counts:
        report = await pull(source, ingestor, cursors, transport)
        ingested = report.ingest.counts() if report.ingest is not None else {}
        return {"pages": report.pages, **ingested}

    name = pull_job_name(source.partner_id)
    return Job(
        name=name, title=f"pull of partner {source.partner_id!r}", event="dmp.pull",
        interval=interval, work=work, lease_key=keys.job_lease_key(name),
        record_key=keys.run_key(name), spec=source,
    )  # fmt: skip


def export_job(
    exports: SegmentExports,
    segment_id: str,
    destination_id: str,
    interval: float,
    transport: Transport,
) -> Job:
    """Export ``segment_id`` to ``destination_id`` (incremental), every ``interval`` seconds;
    due counts from the last export's report, so an export run from the CLI counts."""

    async def work() -> Counts:
        report = await exports.export(segment_id, destination_id, transport)
        return {
            "members": report.members, "added": report.added, "removed": report.removed,
            "rejected": report.rejected, "failed": report.failed,
            "unmatched": report.unmatched, "no_consent": report.no_consent,
            "batches": report.batches, "seconds": report.seconds,
        }  # fmt: skip

    async def last_started() -> float | None:
        report = await exports.state(segment_id, destination_id).last_report()
        return None if report is None else report.started_at

    name = export_job_name(segment_id, destination_id)
    return Job(
        name=name, title=f"export of segment {segment_id!r} to {destination_id!r}",
        event="dmp.export", interval=interval, work=work, lease_key=keys.job_lease_key(name),
        record_key=keys.run_key(name), spec=exports.destinations.get(destination_id),
        last_started=last_started,
    )  # fmt: skip
