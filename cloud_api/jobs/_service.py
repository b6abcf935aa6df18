"""The job lifecycle::

    queued ──▶ sent ──▶ accepted ──▶ waiting_printer ──▶ printing ──▶ printed
      │          │          │              │                 │
      │          │          └──────────────┴─────────────────┴──▶ failed | outcome_unknown
      ├──────────┴──▶ expired            (a deadline passed before the job started)
      └──────────┬──▶ cancelled          (DELETE before the agent started printing)

A job is stored before the caller hears of it, and every transition is a conditional update
with its time and cause. Jobs for an offline agent wait ``queued`` and are sent when it comes
back, unless their deadline passed (``expired``). Replies may arrive in any API instance's
session and long after the request; they are applied from the store, not from memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import msgspec

from mqtt_adapter import request_properties
from protocol import (
    METHOD_JOB_CANCEL,
    METHOD_PRINT_JOB,
    METHOD_PRINTER_TEST,
    DecodeError,
    Done,
    ErrorCode,
    Failed,
    JobCancelParams,
    PrintJobParams,
    Reply,
    Request,
    decode_reply,
    encode,
    is_valid_id,
    new_job_id,
    reply_topic,
    request_topic,
)

from .._auth import Principal
from .._correlator import Correlator
from .._errors import ApiError
from .._mqtt import MqttLink
from .._observe import JobObserver
from .._registry import AgentRecord, Registry
from .._settings import ApiSettings
from ..store import (
    FINAL_STATES,
    IdempotencyConflict,
    JobEvent,
    JobRecord,
    JobState,
    Store,
)
from ._hub import JobHub, Watch, wait_for
from ._late import late_cause, late_result
from ._models import SubmitJob
from ._rules import canonical, may_retry, reply_step
from ._testprint import TestPrints

log = logging.getLogger("cloud_api.jobs")

S = JobState
_IN_FLIGHT = frozenset({S.SENT, S.ACCEPTED, S.WAITING_PRINTER, S.PRINTING})
#: replies to apply: (branch the reply came from, the reply, cloud time it was received)
_Inbox = collections.deque[tuple[str, str, Reply, float | None]]


class JobService:
    def __init__(
        self,
        settings: ApiSettings,
        store: Store,
        link: MqttLink,
        registry: Registry,
        correlator: Correlator,
    ) -> None:
        self.settings = settings
        self.store = store
        self.link = link
        self.registry = registry
        self.correlator = correlator
        self.hub = JobHub()
        #: job events, stage times and outcomes for the logs and /metrics (set by the app)
        self.observer = JobObserver()
        #: job id -> its replies waiting to be applied, in arrival order
        self._inbox: dict[str, _Inbox] = {}
        #: job id -> monotonic time this instance last published its request
        self._published: dict[str, float] = {}
        #: job id -> times the sweeper asked again since the job last changed state
        self._resends: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tests = TestPrints(self)
        registry.on_online.append(self._agent_came_online)
        #: called with (branch, printer) before a job or test print is created; raises to refuse
        #: it (the per-printer rate limit)
        self.admit: Callable[[str, str], None] | None = None

    # --- submission ------------------------------------------------------------------------

    async def submit(
        self,
        principal: Principal,
        request: SubmitJob,
        idempotency_key: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Store a print job and send it if its agent is online. Returns (job, created).

        An Idempotency-Key is matched with the request *as decoded* (its canonical form: the
        same JSON with other spacing, key order or defaults spelled out is the same request)."""
        params = encode(
            PrintJobParams(
                printer=request.printer_id, content=request.content, copies=request.copies
            )
        )
        expire_after = request.expire_after or self.settings.default_expire_after
        return await self._create(
            principal,
            request.branch_id,
            request.printer_id,
            "print",
            params,
            request.copies,
            expire_after,
            idempotency_key,
            canonical(request),
        )

    async def _create(
        self,
        principal: Principal,
        branch_id: str,
        printer_id: str,
        kind: str,
        params: bytes,
        copies: int,
        expire_after: float,
        idempotency_key: str | None,
        request_form: bytes,
        job_id: str | None = None,
    ) -> tuple[JobRecord, bool]:
        if not (is_valid_id(branch_id) and principal.may_see(branch_id)):
            raise ApiError(ErrorCode.NOT_FOUND, f"branch {branch_id[:64]!r} not found")
        agent = self._agent_for(branch_id, printer_id)
        if self.admit is not None:
            self.admit(branch_id, printer_id)
        now = time.time()
        deadline = now + expire_after
        # An online agent gets the job at once: it is stored ``sent`` (its ``queued`` and
        # ``sent`` events in one transaction), then published; a failed publish puts it back
        # to ``queued`` for the sweeper. No other instance can race for a job not yet stored.
        send = agent.online() and deadline > now
        job = JobRecord(
            id=job_id or new_job_id(),
            branch_id=branch_id,
            printer_id=printer_id,
            agent_id=agent.agent_id,
            kind=kind,
            state=S.SENT if send else S.QUEUED,
            params=params,
            copies=copies,
            created_at=now,
            updated_at=now,
            deadline=deadline,
            sent_by=self.settings.instance_id if send else None,
            idempotency_scope=principal.name if idempotency_key else None,
            idempotency_key=idempotency_key,
            request_hash=hashlib.sha256(request_form).hexdigest() if idempotency_key else None,
        )
        try:
            stored, created = await self.store.create_job(
                job,
                "submitted",
                state_cause=f"sent to agent {agent.agent_id}" if send else None,
                may_retry=may_retry,
            )
        except IdempotencyConflict as exc:
            raise ApiError(
                ErrorCode.CONFLICT,
                "Idempotency-Key was already used with a different request body",
                job_id=exc.job_id,
            ) from None
        if created:
            self.observer.created(stored)
            self.hub.notify(stored.id, stored)  # the live feed shows a job from its first state
        if created and send:
            return await self._publish_created(stored, agent), True
        return stored, created

    def _agent_for(self, branch_id: str, printer_id: str) -> AgentRecord:
        agent = (
            self.registry.find_printer(branch_id, printer_id) if is_valid_id(printer_id) else None
        )
        if agent is None:
            raise ApiError(
                ErrorCode.PRINTER_NOT_FOUND,
                f"no printer {printer_id[:64]!r} in branch {branch_id!r}",
            )
        return agent

    # --- sending ---------------------------------------------------------------------------

    async def _send(self, job: JobRecord, agent: AgentRecord) -> bool:
        """queued -> sent, then publish. Only one API instance wins the transition."""
        remaining = job.deadline - time.time()
        if remaining <= 0:
            await self._transition(
                job.id, S.EXPIRED, {S.QUEUED}, "deadline passed while the job waited for its agent"
            )
            return False
        if not await self._transition(
            job.id,
            S.SENT,
            {S.QUEUED},
            f"sent to agent {agent.agent_id}",
            sent_by=self.settings.instance_id,
            agent_id=agent.agent_id,
        ):
            return False
        try:
            await self._publish(job, agent, remaining)
        except ApiError as exc:
            await self._transition(
                job.id, S.QUEUED, {S.SENT}, f"not sent ({exc.message}); waiting to retry"
            )
            return False
        return True

    async def _publish_created(self, job: JobRecord, agent: AgentRecord) -> JobRecord:
        """Publish a job created ``sent``; when that fails, put it back to ``queued``."""
        try:
            await self._publish(job, agent, job.deadline - time.time())
        except ApiError as exc:
            back = await self._transition(
                job.id, S.QUEUED, {S.SENT}, f"not sent ({exc.message}); waiting to retry"
            )
            if back is None:  # it moved on meanwhile (the broker had it after all)
                return await self.store.get_job(job.id) or job
            return back
        return job

    async def _publish(self, job: JobRecord, agent: AgentRecord, remaining: float) -> None:
        method = METHOD_PRINTER_TEST if job.kind == "test" else METHOD_PRINT_JOB
        payload = encode(
            Request(
                method=method,
                params=msgspec.Raw(job.params),
                deadline=job.deadline + agent.clock_offset,
            )
        )
        props = request_properties(
            response_topic=reply_topic(job.branch_id, self.settings.instance_id, agent.agent_id),
            correlation_id=job.id,
            expiry_s=remaining,
            traceparent=self.observer.traceparent(job.id),
        )
        await self.link.publish(request_topic(job.branch_id, agent.agent_id), payload, props)
        self._published[job.id] = time.monotonic()

    def _agent_came_online(self, agent: AgentRecord) -> None:
        self._spawn(self._dispatch_queued(agent.branch_id, agent.agent_id), "dispatch")

    async def _dispatch_queued(self, branch_id: str, agent_id: str) -> None:
        agent = self.registry.agent(branch_id, agent_id)
        if agent is None:
            return
        for job in await self.store.jobs_in_states(
            {S.QUEUED}, branch_id=branch_id, agent_id=agent_id
        ):
            await self._send(job, agent)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    # --- replies ---------------------------------------------------------------------------

    def on_reply(
        self, branch_id: str, agent_id: str, correlation: bytes | None, payload: bytes
    ) -> None:
        """Route a reply from ``agent_id`` (its reply topic says so, and the broker lets only
        that agent publish there): RPCs waited on in memory (cancel) first, then jobs from the
        store."""
        if correlation is not None and self.correlator.has(correlation):
            self.correlator.deliver(branch_id, agent_id, correlation, payload)
            return
        try:
            job_id = (correlation or b"").decode("ascii")
        except UnicodeDecodeError:
            job_id = ""
        if not is_valid_id(job_id):
            log.info("dropping reply without a usable correlation id on branch %s", branch_id)
            return
        try:
            reply = decode_reply(payload)
        except DecodeError as exc:
            log.warning("dropping malformed reply for job %s: %s", job_id, exc.message)
            return
        # received time, for the agent's clock: None for a reply read while the session replays
        # what was queued during an outage (as old as the outage: no clock sample)
        received = time.time() if self.link.ready.is_set() else None
        inbox = self._inbox.get(job_id)
        if inbox is not None:  # the job's task applies it after those before it
            inbox.append((branch_id, agent_id, reply, received))
            return
        self._inbox[job_id] = collections.deque([(branch_id, agent_id, reply, received)])
        self._spawn(self._apply_replies(job_id), f"replies:{job_id}")

    async def _apply_replies(self, job_id: str) -> None:
        """Apply a job's replies in arrival order, one store operation at a time: those that
        arrived while the previous operation ran go together in the next one, each still its
        own conditional transition. One task per job while it has replies waiting."""
        inbox = self._inbox[job_id]
        try:
            while inbox:
                replies = list(inbox)
                inbox.clear()
                try:
                    await self._apply(job_id, replies)
                except Exception:
                    log.exception("applying replies to job %s failed", job_id)
        finally:
            del self._inbox[job_id]

    async def _apply(
        self, job_id: str, replies: list[tuple[str, str, Reply, float | None]]
    ) -> None:
        """Each reply is one conditional update: the job must exist, be in a state the reply may
        move, and belong to the branch and the agent the reply came from (only the agent the job
        was sent to may answer it: anything else is forged)."""
        steps = [
            reply_step(branch_id, reply)._replace(from_agent=agent_id)
            for branch_id, agent_id, reply, _ in replies
        ]
        timeline: list[JobEvent] | None = None
        if any(step.to in FINAL_STATES for step in steps) and self.hub.wants_timeline(job_id):
            # a test print waits to answer with the timeline: read it in the same operation
            changed, timeline = await self.store.advance_many_then_timeline(job_id, steps)
        elif len(steps) == 1:
            step = steps[0]
            changed = [
                await self.store.advance(
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
            changed = await self.store.advance_many(job_id, steps)
        last = max((i for i, job in enumerate(changed) if job is not None), default=-1)
        for i, (step, job) in enumerate(zip(steps, changed, strict=True)):
            if job is not None:  # the timeline read belongs to the last change
                self._changed(job_id, step.to, job, timeline if i == last else None)
        for (branch_id, agent_id, reply, received), job in zip(replies, changed, strict=True):
            if job is None:
                await self._dropped(job_id, branch_id, agent_id, reply, received)
            elif job.agent_id is not None and reply.at and received is not None:
                # a reply is a live message of its agent: one more sample of its clock
                agent = self.registry.agent(job.branch_id, job.agent_id)
                if agent is not None:
                    agent.clock.observe(reply.at, received, live=True)

    async def _dropped(
        self, job_id: str, branch_id: str, agent_id: str, reply: Reply, received: float | None
    ) -> None:
        """A reply that changed nothing: log why, and keep one that came after the job was
        final, from the agent it was sent to, as a ``late_reply`` event and the job's
        ``late_result`` (see ``_late.py``)."""
        job = await self.store.get_job(job_id)
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
            updated = await self.store.record_late(
                job_id, branch_id, job.state, encode(late), cause
            )
            if updated is not None:
                log.warning("job %s: %s", job_id, cause)
                self.hub.notify(job_id, updated)
        else:
            log.info("dropping %s reply for job %s, which is %s", reply, job_id, job.state)

    async def _transition(
        self,
        job_id: str,
        to: JobState,
        allowed: set[JobState],
        cause: str,
        *,
        in_branch: str | None = None,
        **fields: Any,
    ) -> JobRecord | None:
        """The job as the transition left it; None when it was in no allowed state."""
        job = await self.store.advance(job_id, to, allowed, cause, in_branch=in_branch, **fields)
        if job is not None:
            self._changed(job_id, to, job)
        return job

    def _changed(
        self, job_id: str, to: JobState, job: JobRecord, timeline: list[JobEvent] | None = None
    ) -> None:
        """Bookkeeping after a transition this instance applied; waiters hear of it."""
        self._resends.pop(job_id, None)
        self.observer.changed(job)
        if to is not S.SENT:
            self._published.pop(job_id, None)
        self.hub.notify(job_id, job, timeline)

    # --- reading ---------------------------------------------------------------------------

    async def get(self, principal: Principal, job_id: str) -> JobRecord:
        job = await self.store.get_job(job_id) if is_valid_id(job_id) else None
        if job is None or not principal.may_see(job.branch_id):
            raise ApiError(ErrorCode.NOT_FOUND, f"job {job_id[:64]!r} not found")
        return job

    async def timeline(self, job_id: str) -> list[JobEvent]:
        return await self.store.timeline(job_id)

    async def events(self, principal: Principal, job_id: str) -> AsyncIterator[JobEvent]:
        """Every transition of the job in order, live, until it reaches a final state."""
        await self.get(principal, job_id)
        seen = 0
        with self.hub.watch(job_id) as watch:
            while True:
                timeline = await self.store.timeline(job_id)
                for event in timeline[seen:]:
                    yield event
                seen = len(timeline)
                if timeline and timeline[-1].state in FINAL_STATES:
                    return
                await wait_for(watch.event, 1.0)

    async def wait(
        self, job_id: str, states: frozenset[JobState] | set[JobState], within: float
    ) -> JobRecord | None:
        """The job once it reaches one of ``states`` (or a final state); None on timeout."""
        with self.hub.watch(job_id) as watch:
            return await self._wait(watch, job_id, None, states, within)

    async def _wait(
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
            job = await self.store.get_job(job_id)
        while True:
            # a record announced while we read is newer than what we read
            for known in (watch.job, job):
                if known is not None and known.state in wanted:
                    return known
            left = end - loop.time()
            if left <= 0:
                return None
            heard = await watch.reach(wanted, min(left, 1.0))
            job = heard if heard is not None else await self.store.get_job(job_id)

    # --- test prints -----------------------------------------------------------------------

    async def test_print(
        self,
        principal: Principal,
        branch_id: str,
        printer_id: str,
        *,
        force: bool = False,
        wait: bool = True,
        idempotency_key: str | None = None,
    ) -> tuple[JobRecord, list[JobEvent]]:
        """A test page as a job (:meth:`TestPrints.test_print`)."""
        return await self._tests.test_print(
            principal,
            branch_id,
            printer_id,
            force=force,
            wait=wait,
            idempotency_key=idempotency_key,
        )

    # --- cancel ----------------------------------------------------------------------------

    async def cancel(self, principal: Principal, job_id: str) -> JobRecord:
        job = await self.get(principal, job_id)
        if job.state is S.QUEUED and await self._transition(
            job.id, S.CANCELLED, {S.QUEUED}, "cancelled before it was sent"
        ):
            return await self.get(principal, job_id)
        job = await self.get(principal, job_id)
        if job.state in {S.SENT, S.ACCEPTED, S.WAITING_PRINTER}:
            await self._cancel_at_agent(job)
            return await self.get(principal, job_id)
        if job.state is S.CANCELLED:
            return job
        raise ApiError(
            ErrorCode.CONFLICT, f"job {job_id} is {job.state}: too late to cancel", job_id=job_id
        )

    async def _cancel_at_agent(self, job: JobRecord) -> None:
        agent = self.registry.agent(job.branch_id, job.agent_id or "")
        if agent is None or not agent.online():
            raise ApiError(
                ErrorCode.AGENT_OFFLINE,
                f"job {job.id} was sent to agent {job.agent_id}, which is offline; "
                "it cannot be cancelled until the agent is back",
                job_id=job.id,
            )
        final = await self.ask_cancel(
            job, agent, expiry=self.settings.accept_timeout, within=self.settings.accept_timeout + 2
        )
        if final is None:
            raise ApiError(
                ErrorCode.AGENT_UNREACHABLE,
                f"agent {agent.agent_id!r} did not answer the cancel",
                job_id=job.id,
            )
        match final:
            case Done():
                await self._transition(
                    job.id,
                    S.CANCELLED,
                    {S.SENT, S.ACCEPTED, S.WAITING_PRINTER},
                    "cancelled at the agent before printing",
                )
            case Failed(error=error):
                raise ApiError(
                    ErrorCode.CONFLICT,
                    f"the agent refused to cancel: {error.message}",
                    job_id=job.id,
                )

    async def ask_cancel(
        self, job: JobRecord, agent: AgentRecord, *, expiry: float, within: float
    ) -> Done | Failed | None:
        """Send ``job.cancel`` for ``job`` to ``agent`` (the request expires in the broker after
        ``expiry`` s); the agent's final answer, or None when none came within ``within`` s.
        Raises :class:`ApiError` when the request cannot be published."""
        cancel_id = new_job_id()
        payload = encode(
            Request(
                method=METHOD_JOB_CANCEL, params=msgspec.Raw(encode(JobCancelParams(job_id=job.id)))
            )
        )
        props = request_properties(
            response_topic=reply_topic(job.branch_id, self.settings.instance_id, agent.agent_id),
            correlation_id=cancel_id,
            expiry_s=expiry,
            traceparent=self.observer.traceparent(job.id),
        )
        with self.correlator.expect(cancel_id, job.branch_id, agent.agent_id) as pending:
            await self.link.publish(request_topic(job.branch_id, agent.agent_id), payload, props)
            try:
                async with asyncio.timeout(within):
                    return await pending.final
            except TimeoutError:
                return None

    # --- background ------------------------------------------------------------------------

    async def run(self) -> None:
        """Recovery at start, then the sweeper: deadlines, late agents, missed dispatches."""
        await self._recover()
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("job sweep failed")
            await asyncio.sleep(self.settings.sweep_interval)

    async def _recover(self) -> None:
        """Send again what this instance had in flight: the agent's ledger answers a job it
        already has from the ledger, so a reply lost in our crash is recovered, never printed
        twice."""
        await self.link.ready.wait()
        for job in await self.store.jobs_in_states(_IN_FLIGHT, limit=100_000):
            if job.sent_by != self.settings.instance_id:
                continue
            agent = self.registry.agent(job.branch_id, job.agent_id or "")
            remaining = job.deadline - time.time()
            if agent is not None and agent.online():
                with contextlib.suppress(ApiError):
                    await self._publish(job, agent, max(remaining, 1.0))

    async def adopt(self, instance_id: str) -> list[JobRecord]:
        """Take over the in-flight jobs of a dead instance (hook of :mod:`cloud_api.instances`,
        which decides when): they become this instance's (``sent_by``), each is asked again at
        once through this instance's reply topic (the agent's ledger answers a job it holds and
        sends its final here), and the sweeper resends and times them out as its own."""
        from ..instances import take_over_jobs

        jobs = await take_over_jobs(self.store, instance_id, self.settings.instance_id, _IN_FLIGHT)
        for job in jobs:
            self._resends.pop(job.id, None)
            agent = self.registry.agent(job.branch_id, job.agent_id or "")
            if agent is not None and agent.online():
                with contextlib.suppress(ApiError):
                    await self._publish(job, agent, max(job.deadline - time.time(), 1.0))
        return jobs

    async def sweep(self) -> None:
        now = time.time()
        settings = self.settings
        for job in await self.store.jobs_in_states({S.QUEUED}, limit=100_000):
            agent = self.registry.agent(job.branch_id, job.agent_id or "")
            if job.deadline <= now:
                await self._transition(
                    job.id,
                    S.EXPIRED,
                    {S.QUEUED},
                    "deadline passed while the job waited for its agent",
                )
            elif agent is not None and agent.online():
                await self._send(job, agent)
        in_flight = await self.store.jobs_in_states(_IN_FLIGHT, limit=100_000)
        for job in in_flight:
            if job.state is S.SENT and job.deadline + settings.sent_grace <= now:
                await self._transition(
                    job.id,
                    S.EXPIRED,
                    {S.SENT},
                    "the agent did not take the job before its deadline",
                )
            elif (
                job.state in {S.ACCEPTED, S.WAITING_PRINTER, S.PRINTING}
                and job.deadline + settings.outcome_grace <= now
            ):
                await self._transition(
                    job.id,
                    S.OUTCOME_UNKNOWN,
                    {S.ACCEPTED, S.WAITING_PRINTER, S.PRINTING},
                    "the agent accepted the job but never reported a result",
                )
            else:
                await self._resend_if_silent(job)
        # forget jobs that ended elsewhere (another instance, or a reply applied meanwhile)
        open_ids = {job.id for job in in_flight}
        for job_id in [j for j in self._resends if j not in open_ids]:
            del self._resends[job_id]

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
        if job.sent_by != self.settings.instance_id:
            return  # the instance that sent it asks (its reply topic gets the answers)
        attempts = self._resends.get(job.id, 0)
        wait = min(self.settings.resend_after * 2**attempts, max(self.settings.resend_after, 60.0))
        last = self._published.get(job.id)
        silent = time.time() - job.updated_at
        if last is not None:
            silent = min(silent, time.monotonic() - last)
        if silent < wait:
            return
        agent = self.registry.agent(job.branch_id, job.agent_id or "")
        if agent is None or not agent.online():
            return
        try:
            await self._publish(job, agent, job.deadline - time.time())
        except ApiError:
            return
        self._resends[job.id] = attempts + 1
        log.info("job %s %s, silent for %.1f s: asked its agent again", job.id, job.state, silent)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
