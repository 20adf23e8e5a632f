"""``cookiematch dmp ingest --workers N``: ingestion in N processes over one store.

One Python process is bound by its interpreter lock (parsing, merging and the store's writer
share it), so a large ingestion runs in worker processes: this process reads the files and
deals the records out by partner uid (``shards.deal``), each worker parses, resolves and
writes its share through its own Ingestor, exactly as a single process does. The store keeps
their writes apart: Redis per command, SQLite by its write lock (a worker waits for another's
transaction; ``Durability.ASYNC`` stores wait long for it, see ``storage.sqlite``).

A worker writes its rejects to a file of its own, copied to the sink at the end; its counts
come back when its store is closed (flushed). If a worker fails, the others are stopped and
the command fails: ingesting again is idempotent.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import IO

from cookiematch.cli.dmp_ingestor import load_partner, open_ingestor
from cookiematch.dmp.ingest import IngestReport, bulk_gc
from cookiematch.dmp.ingest.pipeline import HOLD_PROFILES
from cookiematch.dmp.ingest.readers import Batch
from cookiematch.dmp.ingest.rejects import RejectsWriter
from cookiematch.dmp.ingest.shards import deal
from cookiematch.errors import WorkerFailed

MAX_WORKERS = 64
MAX_AUTO_WORKERS = 8
"""Memory: a worker holds up to ``QUEUED_BATCHES`` + 2 batches, ~0.5 GB at 100,000 records."""
PARALLEL_FROM_BYTES = 64 * 2**20
"""Smaller data is ingested in this process: starting workers costs about a second."""
READ_LINES = 10_000
"""Lines read at a time by this process, before they are dealt out."""
QUEUED_BATCHES = 2
"""Batches waiting for each worker (memory: a batch is ``--batch-size`` records)."""
POLL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class _Job:
    config_file: Path
    partner_id: str
    rejects: Path
    hold_profiles: int


# (worker, counts or None, error or None)
_Outcome = tuple[int, dict[str, int] | None, str | None]


def auto_workers(data_bytes: int) -> int:
    """The default ``--workers``: two per CPU (up to ``MAX_AUTO_WORKERS``) for large data,
    else 1 (this process). Two per CPU, because a worker spends much of its time waiting for
    the store (SQLite's write lock, Redis's answers): measured on 2 CPUs, 4 workers ingest
    ~15 % (SQLite) to ~20 % (Redis) more than 2."""
    if data_bytes < PARALLEL_FROM_BYTES:
        return 1
    return max(1, min(2 * (os.cpu_count() or 1), MAX_AUTO_WORKERS))


def ingest_in_workers(
    config_file: Path,
    partner_id: str,
    batches: Iterable[Batch],
    *,
    workers: int,
    batch_size: int,
    hold_profiles: int = HOLD_PROFILES,
    rejects: IO[str],
) -> IngestReport:
    """Ingest ``batches`` in ``workers`` processes; their rejects go to ``rejects``."""
    total = IngestReport()
    with tempfile.TemporaryDirectory(prefix="cookiematch-ingest-") as scratch:
        jobs = [
            _Job(config_file, partner_id, Path(scratch) / f"rejects-{i}.jsonl", hold_profiles)
            for i in range(workers)
        ]
        crew = _Crew(jobs)
        try:
            for worker, batch in deal(batches, workers, batch_size):
                crew.hand(worker, batch)
            for worker in range(workers):
                crew.hand(worker, None)
            for counts in crew.outcomes():
                total.add(_report(counts))
        finally:
            crew.stop()
        for job in jobs:
            if job.rejects.exists():
                with job.rejects.open(encoding="utf-8") as stream:
                    shutil.copyfileobj(stream, rejects)
    rejects.flush()
    return total


def _report(counts: dict[str, int]) -> IngestReport:
    report = IngestReport()
    for name, value in counts.items():
        setattr(report, name, value)
    return report


class _Crew:
    """The worker processes, a queue of batches for each, one queue of outcomes from all."""

    def __init__(self, jobs: Sequence[_Job]) -> None:
        context = multiprocessing.get_context("spawn")  # no threads or event loop inherited
        self._inboxes: list[Queue[Batch | None]] = [context.Queue(QUEUED_BATCHES) for _ in jobs]
        self._outbox: Queue[_Outcome] = context.Queue()
        self._processes: list[BaseProcess] = [
            context.Process(
                target=_worker_main,
                args=(i, job, self._inboxes[i], self._outbox),
                name=f"ingest-{i}",
                daemon=True,
            )
            for i, job in enumerate(jobs)
        ]
        for process in self._processes:
            process.start()

    def hand(self, worker: int, item: Batch | None) -> None:
        """Queue ``item`` for ``worker``; raise if it has stopped (its queue would stay full)."""
        while True:
            try:
                self._inboxes[worker].put(item, timeout=POLL_SECONDS)
                return
            except queue.Full:
                if not self._processes[worker].is_alive():
                    raise self._failure(worker) from None

    def outcomes(self) -> Iterator[dict[str, int]]:
        """Every worker's counts; the first failure raises."""
        left = set(range(len(self._processes)))
        while left:
            try:
                worker, counts, error = self._outbox.get(timeout=POLL_SECONDS)
            except queue.Empty:
                gone = [i for i in left if not self._processes[i].is_alive()]
                if gone:
                    raise self._failure(gone[0]) from None
                continue
            if error is not None:
                raise WorkerFailed(f"ingest worker {self._processes[worker].name}: {error}")
            assert counts is not None
            left.discard(worker)
            yield counts

    def _failure(self, worker: int) -> WorkerFailed:
        """Why ``worker`` stopped: the error it reported (any worker's), else its exit code."""
        try:
            while True:
                reporter, _, error = self._outbox.get(timeout=POLL_SECONDS)
                if error is not None:
                    return WorkerFailed(f"ingest worker {self._processes[reporter].name}: {error}")
        except queue.Empty:
            stopped = self._processes[worker]
            return WorkerFailed(f"ingest worker {stopped.name} stopped (exit {stopped.exitcode})")

    def stop(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.terminate()
            process.join()


def _worker_main(
    index: int, job: _Job, inbox: Queue[Batch | None], outbox: Queue[_Outcome]
) -> None:
    """A worker process: ingest what arrives until None, then report the counts."""
    try:
        report = asyncio.run(_ingest(job, inbox))
    except BaseException as exc:  # reported to the parent, which fails the command
        outbox.put((index, None, f"{type(exc).__name__}: {exc}"))
        return
    outbox.put((index, report.counts(), None))


async def _ingest(job: _Job, inbox: Queue[Batch | None]) -> IngestReport:
    config, _ = load_partner(job.config_file, job.partner_id)

    def arriving() -> Iterator[Batch]:
        while (batch := inbox.get()) is not None:
            yield batch

    with job.rejects.open("w", encoding="utf-8") as stream:
        writer = RejectsWriter(stream)
        async with open_ingestor(config) as ingestor:
            with bulk_gc():
                return await ingestor.ingest(
                    job.partner_id,
                    arriving(),
                    on_reject=writer.write,
                    hold_profiles=job.hold_profiles,
                )
