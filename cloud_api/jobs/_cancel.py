"""Cancel: a ``queued`` job is cancelled in the store; one already sent is cancelled by asking
its agent (``job.cancel``, answered in memory), which refuses once the job started printing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from protocol import (
    METHOD_JOB_CANCEL,
    Done,
    ErrorCode,
    Failed,
    JobCancelParams,
    encode,
    new_job_id,
)

from .._auth import Principal
from .._errors import ApiError
from .._registry import AgentRecord
from ..store import JobRecord, JobState
from ._core import Core
from ._dispatch import Dispatch
from ._reads import Reads
from ._transitions import Transitions

S = JobState
_AT_AGENT = {S.SENT, S.ACCEPTED, S.WAITING_PRINTER}


@dataclass(frozen=True, slots=True)
class Cancels:
    core: Core
    transitions: Transitions
    dispatch: Dispatch
    reads: Reads

    async def cancel(self, principal: Principal, job_id: str) -> JobRecord:
        job = await self.reads.get(principal, job_id)
        if job.state is S.QUEUED and await self.transitions.move(
            job.id, S.CANCELLED, {S.QUEUED}, "cancelled before it was sent"
        ):
            return await self.reads.get(principal, job_id)
        job = await self.reads.get(principal, job_id)
        if job.state in _AT_AGENT:
            await self._at_agent(job)
            return await self.reads.get(principal, job_id)
        if job.state is S.CANCELLED:
            return job
        raise ApiError(
            ErrorCode.CONFLICT, f"job {job_id} is {job.state}: too late to cancel", job_id=job_id
        )

    async def _at_agent(self, job: JobRecord) -> None:
        agent = self.core.registry.agent(job.branch_id, job.agent_id or "")
        if agent is None or not agent.online():
            raise ApiError(
                ErrorCode.AGENT_OFFLINE,
                f"job {job.id} was sent to agent {job.agent_id}, which is offline; "
                "it cannot be cancelled until the agent is back",
                job_id=job.id,
            )
        within = self.core.settings.accept_timeout
        final = await self.ask(job, agent, expiry=within, within=within + 2)
        if final is None:
            raise ApiError(
                ErrorCode.AGENT_UNREACHABLE,
                f"agent {agent.agent_id!r} did not answer the cancel",
                job_id=job.id,
            )
        match final:
            case Done():
                await self.transitions.move(
                    job.id, S.CANCELLED, _AT_AGENT, "cancelled at the agent before printing"
                )
            case Failed(error=error):
                raise ApiError(
                    ErrorCode.CONFLICT,
                    f"the agent refused to cancel: {error.message}",
                    job_id=job.id,
                )

    async def ask(
        self, job: JobRecord, agent: AgentRecord, *, expiry: float, within: float
    ) -> Done | Failed | None:
        """Send ``job.cancel`` for ``job`` to ``agent`` (the request expires in the broker after
        ``expiry`` s); the agent's final answer, or None when none came within ``within`` s.
        Raises :class:`ApiError` when the request cannot be published."""
        cancel_id = new_job_id()
        params = encode(JobCancelParams(job_id=job.id))
        with self.core.flights.expect(cancel_id, job.id, job.branch_id, agent.agent_id) as rpc:
            await self.dispatch.request(
                job.branch_id,
                agent,
                cancel_id,
                METHOD_JOB_CANCEL,
                params,
                expiry=expiry,
                deadline=None,
                trace_of=job.id,
            )
            try:
                async with asyncio.timeout(within):
                    return await rpc.final
            except TimeoutError:
                return None
