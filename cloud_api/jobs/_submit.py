"""Submission: a job is stored before the caller hears of it, then sent if its agent is online.

The branch check and the agent lookup happen once per submission (:meth:`Submission.target`),
for print jobs and test prints alike; :meth:`Submission.create` takes their result.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from protocol import ErrorCode, PrintJobParams, encode, is_valid_id, new_job_id

from .._auth import Principal
from .._errors import ApiError
from .._registry import AgentRecord
from ..store import IdempotencyConflict, JobRecord, JobState
from ._core import Core
from ._dispatch import Dispatch
from ._models import SubmitJob
from ._rules import canonical, may_retry

S = JobState


@dataclass(frozen=True, slots=True)
class Submission:
    core: Core
    dispatch: Dispatch

    def target(self, principal: Principal, branch_id: str, printer_id: str) -> AgentRecord:
        """The agent serving ``printer_id`` in a branch the caller may see (404 otherwise:
        branch ids do not leak), after the per-printer admission check."""
        if not (is_valid_id(branch_id) and principal.may_see(branch_id)):
            raise ApiError(ErrorCode.NOT_FOUND, f"branch {branch_id[:64]!r} not found")
        agent = (
            self.core.registry.find_printer(branch_id, printer_id)
            if is_valid_id(printer_id)
            else None
        )
        if agent is None:
            raise ApiError(
                ErrorCode.PRINTER_NOT_FOUND,
                f"no printer {printer_id[:64]!r} in branch {branch_id!r}",
            )
        return agent

    async def submit(
        self, principal: Principal, request: SubmitJob, idempotency_key: str | None = None
    ) -> tuple[JobRecord, bool]:
        """Store a print job and send it if its agent is online. Returns (job, created).

        An Idempotency-Key is matched with the request *as decoded* (its canonical form: the
        same JSON with other spacing, key order or defaults spelled out is the same request)."""
        agent = self.target(principal, request.branch_id, request.printer_id)
        params = encode(
            PrintJobParams(
                printer=request.printer_id, content=request.content, copies=request.copies
            )
        )
        return await self.create(
            principal,
            agent,
            request.printer_id,
            "print",
            params,
            request.copies,
            request.expire_after or self.core.settings.default_expire_after,
            idempotency_key,
            canonical(request),
        )

    async def known(
        self, principal: Principal, idempotency_key: str, request_form: bytes
    ) -> JobRecord | None:
        """The job that a request with this key already made, as :meth:`create` would answer
        it; None when the request would make a new job."""
        try:
            return await self.core.store.job_for_key(
                principal.name, idempotency_key, _hash(request_form), may_retry
            )
        except IdempotencyConflict as exc:
            raise _conflict(exc) from None

    async def create(
        self,
        principal: Principal,
        agent: AgentRecord,
        printer_id: str,
        kind: str,
        params: bytes,
        copies: int,
        expire_after: float,
        idempotency_key: str | None,
        request_form: bytes,
        job_id: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Store a job for ``agent`` (from :meth:`target`) and send it if the agent is online."""
        core = self.core
        branch_id = agent.branch_id
        if core.admit is not None:
            core.admit(branch_id, printer_id)
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
            sent_by=core.settings.instance_id if send else None,
            idempotency_scope=principal.name if idempotency_key else None,
            idempotency_key=idempotency_key,
            request_hash=_hash(request_form) if idempotency_key else None,
        )
        try:
            stored, created = await core.store.create_job(
                job,
                "submitted",
                state_cause=f"sent to agent {agent.agent_id}" if send else None,
                may_retry=may_retry,
            )
        except IdempotencyConflict as exc:
            raise _conflict(exc) from None
        if created:
            core.observer.created(stored)
            core.flights.notify(stored.id, stored)  # the live feed shows a job from its start
        if created and send:
            _, now_job = await self.dispatch.publish_sent(stored, agent)
            return now_job, True
        return stored, created


def _hash(request_form: bytes) -> str:
    return hashlib.sha256(request_form).hexdigest()


def _conflict(exc: IdempotencyConflict) -> ApiError:
    return ApiError(
        ErrorCode.CONFLICT,
        "Idempotency-Key was already used with a different request body",
        job_id=exc.job_id,
    )
