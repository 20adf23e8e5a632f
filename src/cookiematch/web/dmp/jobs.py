"""The DMP server's scheduled jobs, as the definitions stand now (``web/dmp/definitions.py``):
the segment recompute, each partner's pull (``pull_url`` every ``pull_interval_minutes``), and
each scheduled export (a destination's ``segments`` every ``export_interval_minutes``).
``jobs()`` is what the server's ``ScheduleSet`` runs; ``pull`` and ``export`` are also what the
admin API triggers (an export to any destination, scheduled or not)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cookiematch.config.dmp import DmpPartnerConfig
from cookiematch.config.dmp_segments import DmpDestinationConfig
from cookiematch.dmp.ingest import Ingestor
from cookiematch.dmp.jobs import export_job, pull_job
from cookiematch.dmp.pull import Cursors, PullSource
from cookiematch.dmp.schedule import Job
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.segments.schedule import recompute_job
from cookiematch.dmp.segments.service import SegmentService
from cookiematch.dmp.segments.updater import RecomputeReport
from cookiematch.dmp.transport import PullTransport, Transport
from cookiematch.errors import NotFound
from cookiematch.storage.base import Store
from cookiematch.web.dmp.definitions import DmpDefinitions

__all__ = ["DmpJobs"]

MINUTE = 60.0


class DmpJobs:
    def __init__(
        self,
        definitions: DmpDefinitions,
        store: Store,
        *,
        segments: SegmentService,
        exports: SegmentExports,
        ingestor: Ingestor,
        transport: PullTransport,
        exports_transport: Transport,
        recompute_run: Callable[[], Awaitable[RecomputeReport]] | None = None,
    ) -> None:
        """``recompute_run``: the scheduled recompute (on the analytics engine); None: per
        profile, by ``segments``."""
        self._recompute_run = recompute_run
        self._definitions = definitions
        self._cursors = Cursors(store)
        self._segments = segments
        self._exports = exports
        self._ingestor = ingestor
        self._transport = transport
        self._exports_transport = exports_transport

    def recompute(self) -> Job | None:
        """None: no segment, or ``recompute_interval_minutes = 0``."""
        dmp = self._definitions.current
        if not (dmp.segments and dmp.recompute_interval_minutes):
            return None
        interval = dmp.recompute_interval_minutes * MINUTE
        return recompute_job(self._segments, interval, run=self._recompute_run)

    def pull(self, partner_id: str) -> Job:
        partner = self._definitions.entry("partners", partner_id)
        assert isinstance(partner, DmpPartnerConfig)
        job = self._pull(partner)
        if job is None:
            raise NotFound(f"partner {partner_id!r} has no pull_url")
        return job

    def _pull(self, partner: DmpPartnerConfig) -> Job | None:
        if partner.pull_url is None:
            return None
        token = None if partner.pull_token is None else partner.pull_token.reveal()
        source = PullSource(partner.id, partner.pull_url, token, partner.pull_page_size)
        interval = partner.pull_interval_minutes * MINUTE
        return pull_job(source, interval, self._ingestor, self._cursors, self._transport)

    def pulls(self) -> list[Job]:
        found = (self._pull(p) for p in self._definitions.current.partners)
        return [job for job in found if job is not None]

    def export(self, segment_id: str, destination_id: str) -> Job:
        self._definitions.entry("segments", segment_id)
        destination = self._definitions.entry("destinations", destination_id)
        assert isinstance(destination, DmpDestinationConfig)
        scheduled = segment_id in destination.segments
        minutes = destination.export_interval_minutes if scheduled else 0
        return export_job(
            self._exports, segment_id, destination_id, minutes * MINUTE,
            self._exports_transport,
        )  # fmt: skip

    def exports(self) -> list[Job]:
        """The scheduled exports."""
        return [
            self.export(segment, d.id)
            for d in self._definitions.current.destinations
            if d.export_interval_minutes
            for segment in d.segments
        ]

    def jobs(self) -> list[Job]:
        recompute = self.recompute()
        return [*([recompute] if recompute else []), *self.pulls(), *self.exports()]
