"""The sweeper and recovery: deadlines, silent agents, missed dispatches, and the in-flight
jobs of this instance after a restart or of a dead instance it adopts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from .._errors import ApiError
from ..store import JobRecord, JobState
from ._core import IN_FLIGHT, Core
from ._dispatch import Dispatch
from ._transitions import Transitions

log = logging.getLogger("cloud_api.jobs")

S = JobState
_STARTED = {S.ACCEPTED, S.WAITING_PRINTER, S.PRINTING}


@dataclass(frozen=True, slots=True)
class Sweeper:
    core: Core
    transitions: Transitions
    dispatch: Dispatch

    async def run(self) -> None:
        """Recovery at start, then the sweeper: deadlines, late agents, missed dispatches."""
        await self._recover()
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("job sweep failed")
            await asyncio.sleep(self.core.settings.sweep_interval)

    async def _ask_again(self, jobs: list[JobRecord]) -> None:
        """Publish each job again to its agent, if online: the agent's ledger answers a job it
        already has from the ledger, so a reply lost meanwhile is recovered, never printed
        twice."""
        for job in jobs:
            agent = self.core.registry.agent(job.branch_id, job.agent_id or "")
            if agent is not None and agent.online():
                with contextlib.suppress(ApiError):
                    await self.dispatch.publish(job, agent, max(job.deadline - time.time(), 1.0))

    async def _recover(self) -> None:
        """Send again what this instance had in flight before it restarted."""
        await self.core.link.ready.wait()
        mine = self.core.settings.instance_id
        jobs = await self.core.store.jobs_in_states(IN_FLIGHT, limit=100_000)
        await self._ask_again([job for job in jobs if job.sent_by == mine])

    async def adopt(self, instance_id: str) -> list[JobRecord]:
        """Take over the in-flight jobs of a dead instance (hook of :mod:`cloud_api.instances`,
        which decides when): they become this instance's (``sent_by``), each is asked again at
        once through this instance's reply topic (the agent's ledger answers a job it holds and
        sends its final here), and the sweeper resends and times them out as its own."""
        from ..instances import take_over_jobs

        core = self.core
        jobs = await take_over_jobs(core.store, instance_id, core.settings.instance_id, IN_FLIGHT)
        for job in jobs:
            core.flights.forget_resends(job.id)
        await self._ask_again(jobs)
        return jobs

    async def sweep(self) -> None:
        now = time.time()
        core = self.core
        settings = core.settings
        for job in await core.store.jobs_in_states({S.QUEUED}, limit=100_000):
            agent = core.registry.agent(job.branch_id, job.agent_id or "")
            if job.deadline <= now:
                await self.transitions.move(
                    job.id,
                    S.EXPIRED,
                    {S.QUEUED},
                    "deadline passed while the job waited for its agent",
                )
            elif agent is not None and agent.online():
                await self.dispatch.send(job, agent)
        read_at = time.monotonic()
        in_flight = await core.store.jobs_in_states(IN_FLIGHT, limit=100_000)
        for job in in_flight:
            if job.state is S.SENT and job.deadline + settings.sent_grace <= now:
                await self.transitions.move(
                    job.id,
                    S.EXPIRED,
                    {S.SENT},
                    "the agent did not take the job before its deadline",
                )
            elif job.state in _STARTED and job.deadline + settings.outcome_grace <= now:
                await self.transitions.move(
                    job.id,
                    S.OUTCOME_UNKNOWN,
                    _STARTED,
                    "the agent accepted the job but never reported a result",
                )
            else:
                await self._resend_if_silent(job)
        core.flights.keep_only({job.id for job in in_flight}, read_at)

    async def _resend_if_silent(self, job: JobRecord) -> None:
        """Ask the agent again about an in-flight job this instance sent that has been silent for
        ``resend_after`` (then twice as long each time, at most a minute).

        A broker killed before it saved loses what arrived since its last save: a request the
        agent never read (the job stays ``sent``) or the agent's final reply, which the agent
        deleted from its outbox on the broker's PUBACK (the job stays ``accepted``/``printing``
        although it printed). The same job id goes out again; the agent's ledger answers a job
        it holds from the ledger (its stored final, or ``accepted`` while it waits) and never
        prints it twice, and a job it never saw is taken, or refused as expired past its
        deadline."""
        core = self.core
        if job.sent_by != core.settings.instance_id:
            return  # the instance that sent it asks (its reply topic gets the answers)
        resend_after = core.settings.resend_after
        wait = min(resend_after * 2 ** core.flights.resends(job.id), max(resend_after, 60.0))
        last = core.flights.last_published(job.id)
        silent = time.time() - job.updated_at
        if last is not None:
            silent = min(silent, time.monotonic() - last)
        if silent < wait:
            return
        agent = core.registry.agent(job.branch_id, job.agent_id or "")
        if agent is None or not agent.online():
            return
        try:
            await self.dispatch.publish(job, agent, job.deadline - time.time())
        except ApiError:
            return
        core.flights.resent(job.id)
        log.info("job %s %s, silent for %.1f s: asked its agent again", job.id, job.state, silent)
