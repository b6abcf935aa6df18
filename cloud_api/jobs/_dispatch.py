"""Sending requests to agents: the one place a :class:`~protocol.Request` is built and
published, ``queued -> sent`` (only one API instance wins it), and the queue of an agent that
comes back online."""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec

from mqtt_adapter import request_properties
from protocol import (
    METHOD_PRINT_JOB,
    METHOD_PRINTER_TEST,
    Request,
    encode,
    is_valid_id,
    reply_topic,
    request_topic,
)

from .._errors import ApiError
from .._registry import AgentRecord
from ..store import JobRecord, JobState
from ._core import Core
from ._transitions import Transitions

S = JobState


def correlation_id(correlation: bytes | None) -> str | None:
    """The job (or RPC) id that correlation data names; None when it names none."""
    try:
        job_id = (correlation or b"").decode("ascii")
    except UnicodeDecodeError:
        return None
    return job_id if is_valid_id(job_id) else None


@dataclass(frozen=True, slots=True)
class Dispatch:
    core: Core
    transitions: Transitions

    async def request(
        self,
        branch_id: str,
        agent: AgentRecord,
        correlation: str,
        method: str,
        params: bytes,
        *,
        expiry: float,
        deadline: float | None,
        trace_of: str,
    ) -> None:
        """Publish one request to ``agent``, answered on this instance's reply topic with
        ``correlation``; it expires in the broker after ``expiry`` s, and the agent refuses it
        after ``deadline`` (cloud clock, sent in the agent's). Raises :class:`ApiError` when it
        cannot be published."""
        payload = encode(
            Request(
                method=method,
                params=msgspec.Raw(params),
                deadline=None if deadline is None else deadline + agent.clock_offset,
            )
        )
        instance = self.core.settings.instance_id
        props = request_properties(
            response_topic=reply_topic(branch_id, instance, agent.agent_id),
            correlation_id=correlation,
            expiry_s=expiry,
            traceparent=self.core.observer.traceparent(trace_of),
        )
        await self.core.link.publish(request_topic(branch_id, agent.agent_id), payload, props)

    async def publish(self, job: JobRecord, agent: AgentRecord, remaining: float) -> None:
        """Publish ``job``'s request (again); raises :class:`ApiError` when it cannot."""
        method = METHOD_PRINTER_TEST if job.kind == "test" else METHOD_PRINT_JOB
        await self.request(
            job.branch_id,
            agent,
            job.id,
            method,
            job.params,
            expiry=remaining,
            deadline=job.deadline,
            trace_of=job.id,
        )
        self.core.flights.published(job.id)

    async def send(self, job: JobRecord, agent: AgentRecord) -> bool:
        """queued -> sent, then publish. Only one API instance wins the transition."""
        remaining = job.deadline - time.time()
        if remaining <= 0:
            await self.transitions.move(
                job.id, S.EXPIRED, {S.QUEUED}, "deadline passed while the job waited for its agent"
            )
            return False
        if not await self.transitions.move(
            job.id,
            S.SENT,
            {S.QUEUED},
            f"sent to agent {agent.agent_id}",
            sent_by=self.core.settings.instance_id,
            agent_id=agent.agent_id,
        ):
            return False
        sent, _ = await self.publish_sent(job, agent)
        return sent

    async def publish_sent(self, job: JobRecord, agent: AgentRecord) -> tuple[bool, JobRecord]:
        """Publish a job this instance just stored or moved ``sent``; when that fails, put it
        back to ``queued`` for the sweeper. Whether it went out, and the job as it is now."""
        try:
            await self.publish(job, agent, job.deadline - time.time())
        except ApiError as exc:
            back = await self.transitions.move(
                job.id, S.QUEUED, {S.SENT}, f"not sent ({exc.message}); waiting to retry"
            )
            if back is None:  # it moved on meanwhile (the broker had it after all)
                return False, await self.core.store.get_job(job.id) or job
            return False, back
        return True, job

    def agent_came_online(self, agent: AgentRecord) -> None:
        self.core.spawn(self.dispatch_queued(agent.branch_id, agent.agent_id), "dispatch")

    async def dispatch_queued(self, branch_id: str, agent_id: str) -> None:
        agent = self.core.registry.agent(branch_id, agent_id)
        if agent is None:
            return
        for job in await self.core.store.jobs_in_states(
            {S.QUEUED}, branch_id=branch_id, agent_id=agent_id
        ):
            await self.send(job, agent)
