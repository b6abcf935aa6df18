"""Test prints: a test page as a job, answered with its result — and a 504 that says
truthfully whether the page can still print (docs/jobs.md, "Nothing prints after a retryable
504")."""

from __future__ import annotations

from dataclasses import dataclass

from protocol import (
    Done,
    ErrorCode,
    Failed,
    PrinterTestParams,
    encode,
    error_info,
    new_job_id,
)

from .._auth import Principal
from .._errors import ApiError
from .._registry import AgentRecord
from ..store import JobEvent, JobRecord, JobState
from ._cancel import Cancels
from ._core import Core
from ._inflight import Watch
from ._reads import Reads
from ._rules import refuse_blocked_printer
from ._submit import Submission
from ._transitions import Transitions

S = JobState


@dataclass(frozen=True, slots=True)
class TestPrints:
    core: Core
    submission: Submission
    reads: Reads
    cancels: Cancels
    transitions: Transitions

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
        """A test page as a job; with ``wait``, the final job and its timeline or a typed error
        (without ``wait``: the job as sent, and no timeline).

        Its deadline is ``accept_timeout``: the request's Message Expiry and its deadline in the
        agent's clock both end when the API gives up waiting for ``accepted`` (see
        :meth:`_unreachable`). With an Idempotency-Key, the same key answers the same job
        (waiting for it if it is still on its way), or a new attempt when it ended in a way
        that may be retried (:func:`may_retry`)."""
        agent = self.submission.target(principal, branch_id, printer_id)
        form = encode({"kind": "test", "branch_id": branch_id, "printer_id": printer_id})
        if idempotency_key is not None:
            # asked again (its answer lost): the job it made, whatever the agent is doing now
            known = await self.submission.known(principal, idempotency_key, form)
            if known is not None:
                return await self._known_test_print(known, wait)
        if not self.core.link.ready.is_set():  # what we know of the agent is stale or nothing
            raise ApiError(ErrorCode.BROKER_UNAVAILABLE, "the API is not connected to the broker")
        if not agent.online():
            raise ApiError(
                ErrorCode.AGENT_OFFLINE,
                f"agent {agent.agent_id!r} serving {printer_id!r} is offline",
            )
        if not force:
            refuse_blocked_printer(agent, printer_id)
        job_id = new_job_id()
        # Watched from before it exists: every stage reaches us with its record, none is missed.
        with self.core.flights.watch(job_id, wants_timeline=wait) as watch:
            job, created = await self.submission.create(
                principal,
                agent,
                printer_id,
                "test",
                encode(PrinterTestParams(printer=printer_id)),
                1,
                self.core.settings.accept_timeout,
                idempotency_key,
                form,
                job_id,
            )
            if not created:
                return await self._known_test_print(job, wait)
            if not wait:
                return job, []
            final = await self._wait_test_print(watch, job, agent)
            if final is watch.job and watch.timeline is not None:
                return final, watch.timeline  # read with the final change, in its operation
            return final, await self.reads.timeline(final.id)

    async def _known_test_print(
        self, job: JobRecord, wait: bool
    ) -> tuple[JobRecord, list[JobEvent]]:
        """A test print asked again with its Idempotency-Key: the job as it is, once final."""
        if not wait:
            return job, []
        settings = self.core.settings
        with self.core.flights.watch(job.id) as watch:
            final = await self.reads.wait_in(
                watch, job.id, job, set(), settings.accept_timeout + settings.result_timeout
            )
        if final is None:
            raise ApiError(
                ErrorCode.PRINT_TIMEOUT,
                f"test print {job.id} (same Idempotency-Key) is still {job.state}",
                job_id=job.id,
            )
        return final, await self.reads.timeline(final.id)

    async def _wait_test_print(self, watch: Watch, job: JobRecord, agent: AgentRecord) -> JobRecord:
        settings = self.core.settings
        accepted = await self.reads.wait_in(
            watch, job.id, job, {S.ACCEPTED, S.WAITING_PRINTER, S.PRINTING}, settings.accept_timeout
        )
        if accepted is None:
            accepted = await self._unreachable(watch, job, agent)
        final = await self.reads.wait_in(watch, job.id, accepted, set(), settings.result_timeout)
        if final is None:
            raise ApiError(
                ErrorCode.PRINT_TIMEOUT,
                f"agent {agent.agent_id!r} accepted the job but reported no result "
                f"within {settings.result_timeout:g} s",
                job_id=job.id,
            )
        return final

    async def _unreachable(self, watch: Watch, job: JobRecord, agent: AgentRecord) -> JobRecord:
        """No ``accepted`` within ``accept_timeout``: make sure the job can never print before
        answering 504 ``AGENT_UNREACHABLE`` with ``retryable: true``; else say it is not safe.

        The request was published with Message Expiry = ``accept_timeout`` (the broker drops
        it after that) and a deadline of ``created + accept_timeout`` in the agent's clock (the
        offset estimate errs early, never late): past this moment, no agent starts it. What is
        left is a request the agent read in time but has not answered — it may hold it, or
        be printing it while its replies are stuck. So a ``job.cancel`` goes after it, on the
        same topic (it arrives after the request, or leaves a tombstone if the request never
        does), and the answer decides:

        * cancel done: the agent cancelled it (or will refuse it on arrival) — it never prints:
          the job is ``cancelled`` and the 504 is retryable;
        * cancel refused (already printing, printed or ended): the job is in the agent's hands —
          wait for its result as for an accepted job;
        * no answer within ``accept_timeout``: nothing is known — 504 with ``retryable: false``
          (check the job, or the printer, before printing again).
        """
        settings = self.core.settings
        reply = await self._send_cancel(job, agent, settings.accept_timeout)
        moved = watch.job if watch.job is not None and watch.job.state is not S.SENT else None
        if isinstance(reply, Done):
            # the agent cancelled it, or holds a tombstone for it: it never prints, whichever
            # of our transition and the agent's own "failed CANCELLED" reply comes first
            gone = error_info(
                ErrorCode.AGENT_UNREACHABLE,
                f"agent {agent.agent_id!r} did not accept the job within "
                f"{settings.accept_timeout:g} s; it was cancelled at the agent and never prints",
            )
            cancelled = await self.transitions.move(
                job.id,
                S.CANCELLED,
                {S.SENT, S.ACCEPTED, S.WAITING_PRINTER},
                "not accepted in time: cancelled at the agent, it never prints",
                error=encode(gone),
            )
            if cancelled is None:  # the agent's reply made it cancelled: say why it was
                await self.core.store.set_error(job.id, S.CANCELLED, encode(gone))
            raise ApiError(gone.code, gone.message, job_id=job.id, retryable=True)
        if reply is not None:  # refused (too late to cancel) or the job moved meanwhile
            return watch.job or await self.core.store.get_job(job.id) or job
        if moved is not None:
            return moved
        raise ApiError(
            ErrorCode.AGENT_UNREACHABLE,
            f"agent {agent.agent_id!r} did not accept the job within {settings.accept_timeout:g} s "
            "and did not answer its cancel: it never starts the job after its deadline, but may "
            f"have started it before; check job {job.id} (or the printer) before printing again",
            job_id=job.id,
            retryable=False,
        )

    async def _send_cancel(
        self, job: JobRecord, agent: AgentRecord, within: float
    ) -> Done | Failed | None:
        """Send ``job.cancel`` for ``job`` to its agent; its final reply, or None when there is
        none within ``within`` s (or it could not be published)."""
        try:
            return await self.cancels.ask(job, agent, expiry=within, within=within)
        except ApiError:
            return None
