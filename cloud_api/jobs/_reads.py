"""Reading jobs: one job, its timeline, its live events (SSE), and waiting for a stage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from protocol import ErrorCode, is_valid_id

from .._auth import Principal
from .._errors import ApiError
from ..store import FINAL_STATES, JobEvent, JobRecord, JobState
from ._core import Core
from ._inflight import Watch


@dataclass(frozen=True, slots=True)
class Reads:
    core: Core

    async def get(self, principal: Principal, job_id: str) -> JobRecord:
        job = await self.core.store.get_job(job_id) if is_valid_id(job_id) else None
        if job is None or not principal.may_see(job.branch_id):
            raise ApiError(ErrorCode.NOT_FOUND, f"job {job_id[:64]!r} not found")
        return job

    async def timeline(self, job_id: str) -> list[JobEvent]:
        return await self.core.store.timeline(job_id)

    async def events(self, principal: Principal, job_id: str) -> AsyncIterator[JobEvent]:
        """Every transition of the job in order, live, until it reaches a final state."""
        await self.get(principal, job_id)
        seen = 0
        with self.core.flights.watch(job_id) as watch:
            while True:
                timeline = await self.core.store.timeline(job_id)
                for event in timeline[seen:]:
                    yield event
                seen = len(timeline)
                if timeline and timeline[-1].state in FINAL_STATES:
                    return
                await watch.changed(1.0)

    async def wait(
        self, job_id: str, states: frozenset[JobState] | set[JobState], within: float
    ) -> JobRecord | None:
        """The job once it reaches one of ``states`` (or a final state); None on timeout."""
        with self.core.flights.watch(job_id) as watch:
            return await self.wait_in(watch, job_id, None, states, within)

    async def wait_in(
        self,
        watch: Watch,
        job_id: str,
        job: JobRecord | None,
        states: frozenset[JobState] | set[JobState],
        within: float,
    ) -> JobRecord | None:
        """:meth:`wait` inside a watch registered before ``job`` (if given) was read.

        A change this instance applies arrives with its record (no store read); when nothing
        is heard for a second, the store is read: another instance may have moved the job."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        wanted = frozenset(states) | FINAL_STATES
        if job is None and watch.job is None:
            job = await self.core.store.get_job(job_id)
        while True:
            # a record announced while we read is newer than what we read
            for known in (watch.job, job):
                if known is not None and known.state in wanted:
                    return known
            left = end - loop.time()
            if left <= 0:
                return None
            heard = await watch.reach(wanted, min(left, 1.0))
            job = heard if heard is not None else await self.core.store.get_job(job_id)
