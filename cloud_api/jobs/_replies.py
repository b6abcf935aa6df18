"""Replies from agents: each decoded once, then routed to the RPC waiting for it in memory
(``job.cancel``) or to the job's inbox, applied from the store in arrival order.

A reply may arrive in any API instance's session and long after the request: it is applied
from the store, not from memory. Only the agent a job was sent to may answer it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from protocol import DecodeError, Done, Failed, Reply, decode_reply, encode

from ..store import FINAL_STATES, JobEvent
from ._core import Core
from ._dispatch import correlation_id
from ._inflight import Received, Rpc
from ._late import late_cause, late_result
from ._rules import reply_step
from ._transitions import Transitions

log = logging.getLogger("cloud_api.jobs")


@dataclass(frozen=True, slots=True)
class Replies:
    core: Core
    transitions: Transitions

    def on_reply(
        self, branch_id: str, agent_id: str, correlation: bytes | None, payload: bytes
    ) -> None:
        """Route a reply from ``agent_id`` (its reply topic says so, and the broker lets only
        that agent publish there): an RPC waited on in memory first, then the job's inbox."""
        job_id = correlation_id(correlation)
        if job_id is None:
            log.info("dropping reply without a usable correlation id on branch %s", branch_id)
            return
        try:
            reply = decode_reply(payload)
        except DecodeError as exc:
            log.warning("dropping malformed reply for job %s: %s", job_id, exc.message)
            return
        flights = self.core.flights
        rpc = flights.rpc(job_id)
        if rpc is not None:
            _answer(rpc, branch_id, agent_id, reply)
            return
        # received time, for the agent's clock: None for a reply read while the session
        # replays what was queued during an outage (as old as the outage: no clock sample)
        received = time.time() if self.core.link.ready.is_set() else None
        if flights.queue_reply(job_id, (branch_id, agent_id, reply, received)):
            self.core.spawn(self._apply_replies(job_id), f"replies:{job_id}")

    async def _apply_replies(self, job_id: str) -> None:
        """Apply a job's replies in arrival order, one store operation at a time: those that
        arrived while the previous operation ran go together in the next one, each still its
        own conditional transition. One task per job while it has replies waiting."""
        flights = self.core.flights
        try:
            while replies := flights.take_replies(job_id):
                try:
                    await self._apply(job_id, replies)
                except Exception:
                    log.exception("applying replies to job %s failed", job_id)
        finally:
            flights.drop_inbox(job_id)

    async def _apply(self, job_id: str, replies: list[Received]) -> None:
        """Each reply is one conditional update: the job must exist, be in a state the reply may
        move, and belong to the branch and the agent the reply came from (only the agent the job
        was sent to may answer it: anything else is forged)."""
        store = self.core.store
        steps = [
            reply_step(branch_id, reply)._replace(from_agent=agent_id)
            for branch_id, agent_id, reply, _ in replies
        ]
        timeline: list[JobEvent] | None = None
        if any(step.to in FINAL_STATES for step in steps) and self.core.flights.wants_timeline(
            job_id
        ):
            # a test print waits to answer with the timeline: read it in the same operation
            changed, timeline = await store.advance_many_then_timeline(job_id, steps)
        elif len(steps) == 1:
            step = steps[0]
            changed = [
                await store.advance(
                    job_id,
                    step.to,
                    step.allowed_from,
                    step.cause,
                    in_branch=step.in_branch,
                    from_agent=step.from_agent,
                    sent_only=step.sent_only,
                    **step.fields,
                )
            ]
        else:
            changed = await store.advance_many(job_id, steps)
        last = max((i for i, job in enumerate(changed) if job is not None), default=-1)
        for i, (step, job) in enumerate(zip(steps, changed, strict=True)):
            if job is not None:  # the timeline read belongs to the last change
                self.transitions.changed(job_id, step.to, job, timeline if i == last else None)
        for (branch_id, agent_id, reply, received), job in zip(replies, changed, strict=True):
            if job is None:
                await self._dropped(job_id, branch_id, agent_id, reply, received)
            elif job.agent_id is not None and reply.at and received is not None:
                # a reply is a live message of its agent: one more sample of its clock
                agent = self.core.registry.agent(job.branch_id, job.agent_id)
                if agent is not None:
                    agent.clock.observe(reply.at, received, live=True)

    async def _dropped(
        self, job_id: str, branch_id: str, agent_id: str, reply: Reply, received: float | None
    ) -> None:
        """A reply that changed nothing: log why, and keep one that came after the job was
        final, from the agent it was sent to, as a ``late_reply`` event and the job's
        ``late_result`` (see ``_late.py``)."""
        store = self.core.store
        job = await store.get_job(job_id)
        if job is None:
            log.info("dropping reply for unknown job %s", job_id)
        elif job.branch_id != branch_id:
            log.warning(
                "dropping reply for job %s from branch %s: it belongs to %s",
                job_id,
                branch_id,
                job.branch_id,
            )
        elif job.agent_id != agent_id:
            log.warning(
                "dropping reply for job %s from agent %s: it was sent to agent %s",
                job_id,
                agent_id,
                job.agent_id,
            )
        elif job.state in FINAL_STATES:
            late = late_result(job.state, reply, received or time.time())
            if late is None:
                return
            cause = late_cause(late)
            updated = await store.record_late(job_id, branch_id, job.state, encode(late), cause)
            if updated is not None:
                log.warning("job %s: %s", job_id, cause)
                self.core.flights.notify(job_id, updated)
        else:
            log.info("dropping %s reply for job %s, which is %s", reply, job_id, job.state)


def _answer(rpc: Rpc, branch_id: str, agent_id: str, reply: Reply) -> None:
    """Hand a reply to the RPC waiting for it, if it came from where the request went."""
    if branch_id != rpc.branch_id or agent_id != rpc.agent_id:
        # Only the request's own branch and agent may answer it (the broker lets each agent
        # publish only on its own reply topics): anything else is a forgery, never a result.
        log.warning(
            "dropping reply about job %s from %s/%s: the request went to %s/%s",
            rpc.job_id,
            branch_id,
            agent_id,
            rpc.branch_id,
            rpc.agent_id,
        )
        return
    if isinstance(reply, Done | Failed) and not rpc.final.done():
        rpc.final.set_result(reply)
