"""The DMP admin API for scheduled jobs (behind the same guard as the rest of ``/admin/v1``).

    GET  /admin/v1/pulls                                   {"pulls": [state, ...]}
    GET  /admin/v1/pulls/{partner}                         state
    POST /admin/v1/pulls/{partner}/run                     202, Location: its state
    GET  /admin/v1/exports                                 {"exports": [state, ...]} (scheduled)
    GET  /admin/v1/exports/{segment}/{destination}         state
    POST /admin/v1/exports/{segment}/{destination}/run     202, Location: its state

A state is ``{"job", "interval_seconds", "next_at", "holder", "last_run"}``: ``next_at`` null
when the job runs only when asked, ``holder`` the worker running it now, ``last_run`` the
record of its last run (``started_at``, ``finished_at``, ``ok``, ``counts``, ``error``,
``holder``) or null. A run asked for starts at once in the background of the worker that
answered; one already running anywhere answers 409. Unknown names answer 404.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cookiematch.dmp.schedule import Job, ScheduleSet
from cookiematch.web.admin import PREFIX, json_response
from cookiematch.web.dmp.api_spec import Exports, JobState, Pulls, RunStarted
from cookiematch.web.dmp.jobs import DmpJobs

__all__ = ["ScheduleAdmin"]


class ScheduleAdmin:
    def __init__(self, jobs: DmpJobs, schedules: ScheduleSet) -> None:
        self._jobs = jobs
        self._schedules = schedules

    async def _state(self, job: Job) -> JobState:
        state = await self._schedules.schedule(job).state()
        return JobState(
            job=job.name,
            interval_seconds=state.interval_seconds,
            next_at=state.next_at,
            holder=state.holder,
            last_run=state.last_run,
        )

    async def _run(self, job: Job, location: str) -> Response:
        await self._schedules.trigger(job)
        body = RunStarted(job.name, "started", location)
        return json_response(body, 202, {"Location": location})

    async def list_pulls(self, request: Request) -> Response:
        return json_response(Pulls([await self._state(j) for j in self._jobs.pulls()]))

    async def pull(self, request: Request) -> Response:
        return json_response(await self._state(self._jobs.pull(request.path_params["partner"])))

    async def run_pull(self, request: Request) -> Response:
        partner: str = request.path_params["partner"]
        return await self._run(self._jobs.pull(partner), f"{PREFIX}/pulls/{partner}")

    async def list_exports(self, request: Request) -> Response:
        states = [await self._state(j) for j in self._jobs.exports()]
        return json_response(Exports(states))

    def _export(self, request: Request) -> tuple[Job, str]:
        segment, destination = request.path_params["segment"], request.path_params["destination"]
        job = self._jobs.export(segment, destination)
        return job, f"{PREFIX}/exports/{segment}/{destination}"

    async def export(self, request: Request) -> Response:
        job, _ = self._export(request)
        return json_response(await self._state(job))

    async def run_export(self, request: Request) -> Response:
        return await self._run(*self._export(request))

    def routes(self) -> list[Route]:
        export = f"{PREFIX}/exports/{{segment}}/{{destination}}"
        return [
            Route(f"{PREFIX}/pulls", self.list_pulls, methods=["GET"]),
            Route(f"{PREFIX}/pulls/{{partner}}", self.pull, methods=["GET"]),
            Route(f"{PREFIX}/pulls/{{partner}}/run", self.run_pull, methods=["POST"]),
            Route(f"{PREFIX}/exports", self.list_exports, methods=["GET"]),
            Route(export, self.export, methods=["GET"]),
            Route(f"{export}/run", self.run_export, methods=["POST"]),
        ]
