"""The job lifecycle on the agent: admission, cancel, printing, recovery after a restart.

Every decision that must hold across redeliveries and restarts is taken inside a ledger
transaction (:mod:`._ledger`), which also queues the reply that announces it (:mod:`._outbox`):

* a job id seen before is answered from the ledger, never executed again;
* a job starts printing only by the compare-and-set ``received -> printing``, committed before
  the first byte goes to the printer; a cancel or a second copy of the job loses that race;
* a job found ``printing`` at start is reported ``OUTCOME_UNKNOWN``, never printed again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from protocol import (
    METHOD_JOB_CANCEL,
    METHOD_PRINTER_TEST,
    Accepted,
    Done,
    ErrorCode,
    Failed,
    PrinterTestParams,
    Printing,
    PrintJobParams,
    ProtocolError,
    Request,
    Waiting,
    decode_params,
    decode_reply,
    encode,
    error_info,
)

from ._ledger import FINAL_STATES, JobRecord, JobState, Ledger, Tx
from ._render import render_content, render_test_page
from ._slot import PrinterSlot
from ._worker import STARTABLE, Worker, end, waiting_info

__all__ = ["Admission", "CancelRequest", "JobRequest", "Jobs", "PrinterSlot", "Refusal"]

log = logging.getLogger("branch_agent.jobs")

OUTCOME_UNKNOWN_TEXT = (
    "the agent stopped while this job was printing; check the printer before reprinting"
)


# --- what the dispatcher hands over -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRequest:
    """``printer.test`` or ``print.job``: a job that prints (params already validated).

    ``params`` is what arrived (the ledger keeps it); ``decoded`` is what the intake decoded
    it into, so the job is rendered without decoding (and validating) its content again."""

    job_id: str
    method: str
    printer: str
    params: bytes
    reply_to: str
    correlation: bytes
    deadline: float | None
    decoded: PrintJobParams | PrinterTestParams | None = None


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """``job.cancel``: ``job_id`` is the cancel request's own id, ``target`` the job to cancel."""

    job_id: str
    target: str
    reply_to: str
    correlation: bytes


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused before it became a job (malformed, unknown method or printer)."""

    job_id: str | None
    reply_to: str | None
    correlation: bytes | None
    code: ErrorCode
    text: str


Intake = JobRequest | CancelRequest | Refusal | None


@dataclass(frozen=True, slots=True)
class Admission:
    """What the dispatcher does once the intake is committed: queue a new job, drop a cancelled
    one from its printer's queue."""

    queue: JobRecord | None = None
    cancelled: JobRecord | None = None
    #: the params of ``queue`` as the intake decoded them
    decoded: PrintJobParams | PrinterTestParams | None = None


def _failed(job_id: str | None, code: ErrorCode, text: str) -> bytes:
    return encode(Failed(job_id=job_id, at=time.time(), error=error_info(code, text)))


def _replay(job: JobRecord) -> list[bytes]:
    """The answer to a job id seen before: where it stands, never a second execution."""
    if job.state is JobState.RECEIVED:
        return [encode(Accepted(job_id=job.job_id, at=time.time()))]
    if job.state is JobState.WAITING:
        info = waiting_info(ErrorCode(job.error_code or ErrorCode.PRINTER_OFFLINE))
        return [
            encode(Accepted(job_id=job.job_id, at=time.time())),
            encode(Waiting(job_id=job.job_id, at=job.updated_at, error=info)),
        ]
    if job.state is JobState.PRINTING:
        return [
            encode(Accepted(job_id=job.job_id, at=time.time())),
            encode(Printing(job_id=job.job_id, at=job.updated_at)),
        ]
    assert job.final_reply is not None, f"job {job.job_id} ended without a final reply"
    final = decode_reply(job.final_reply)
    if isinstance(final, Done) and final.result is not None:
        final = msgspec.structs.replace(
            final, result=msgspec.structs.replace(final.result, replayed=True)
        )
    return [encode(final)]


class Jobs:
    """Admission, cancel, recovery and one worker per printer, all through the ledger."""

    def __init__(
        self,
        ledger: Ledger,
        printers: dict[str, PrinterSlot],
        *,
        branch_id: str,
        agent_id: str,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._ledger = ledger
        self.printers = printers
        self._branch_id = branch_id
        self._agent_id = agent_id
        self._on_change = on_change
        self._closing = False
        #: the decoded params of print jobs waiting to start, by id (a job resumed from the
        #: ledger after a restart is decoded from its stored params)
        self._decoded: dict[str, PrintJobParams] = {}

    @property
    def queue_depth(self) -> int:
        """Jobs accepted and not yet started, over all printers."""
        return sum(len(p.waiting) for p in self.printers.values())

    # --- intake (ordered: called in the order messages arrive) ----------------------------

    def submit(self, intake: Intake) -> asyncio.Future[Admission]:
        """Record ``intake`` and queue its replies; resolves once committed (then PUBACK)."""
        match intake:
            case JobRequest():
                return self._ledger.submit(lambda tx: self._admit(tx, intake))
            case CancelRequest():
                return self._ledger.submit(lambda tx: self._cancel(tx, intake))
            case Refusal(reply_to=str(topic)):
                payload = _failed(intake.job_id, intake.code, intake.text)
                return self._ledger.submit(
                    lambda tx: _refuse(tx, intake.job_id, topic, intake.correlation, payload)
                )
        return self._ledger.submit(lambda tx: Admission())  # keeps PUBACKs in order

    def admitted(self, admission: Admission) -> None:
        if admission.queue is not None:
            self.printers[admission.queue.printer].enqueue(admission.queue)
            if isinstance(admission.decoded, PrintJobParams):
                self._keep_decoded(admission.queue.job_id, admission.decoded)
            self._on_change()
        if admission.cancelled is not None:
            slot = self.printers.get(admission.cancelled.printer)
            if slot is not None and slot.discard(admission.cancelled.job_id):
                self._on_change()

    def _keep_decoded(self, job_id: str, params: PrintJobParams) -> None:
        self._decoded[job_id] = params
        if len(self._decoded) > self.queue_depth:  # some left the queue without rendering
            waiting = [slot.waiting for slot in self.printers.values()]
            self._decoded = {
                key: value
                for key, value in self._decoded.items()
                if any(key in queued for queued in waiting)
            }

    def _admit(self, tx: Tx, request: JobRequest) -> Admission:
        now = time.time()
        job = JobRecord(
            job_id=request.job_id,
            state=JobState.RECEIVED,
            method=request.method,
            printer=request.printer,
            params=request.params,
            reply_to=request.reply_to,
            correlation=request.correlation,
            deadline=request.deadline,
            received_at=now,
            updated_at=now,
        )
        expired: bytes | None = None
        if request.deadline is not None and now > request.deadline:
            expired = _failed(
                job.job_id, ErrorCode.EXPIRED, "the job's deadline passed before the agent read it"
            )
            job = dataclasses.replace(
                job, state=JobState.EXPIRED, final_reply=expired, error_code=ErrorCode.EXPIRED
            )
        # A new id (the usual case) costs one statement; a known one is answered from its row.
        if not tx.insert_new(job):
            known = tx.get(request.job_id)
            assert known is not None
            log.info("job %s seen before (%s): answered from the ledger", known.job_id, known.state)
            if known.state not in FINAL_STATES and known.reply_to != request.reply_to:
                tx.retarget(known.job_id, request.reply_to)  # the final goes to the latest asker
            for payload in _replay(known):
                tx.reply(known.job_id, request.reply_to, request.correlation, payload)
            return Admission()
        if expired is not None:
            tx.reply(job.job_id, job.reply_to, job.correlation, expired)
            return Admission()
        tx.reply(
            job.job_id, job.reply_to, job.correlation, encode(Accepted(job_id=job.job_id, at=now))
        )
        return Admission(queue=job, decoded=request.decoded)

    def _cancel(self, tx: Tx, request: CancelRequest) -> Admission:
        def answer(payload: bytes) -> None:
            tx.reply(request.job_id, request.reply_to, request.correlation, payload)

        answer(encode(Accepted(job_id=request.job_id, at=time.time())))
        target = tx.get(request.target)
        if target is None:
            # The job has not reached us yet (it may still wait in the broker for this agent):
            # leave a tombstone, so when it arrives it is answered CANCELLED, never printed.
            now = time.time()
            failed = _failed(
                request.target, ErrorCode.CANCELLED, f"cancelled by job.cancel {request.job_id}"
            )
            tx.insert(
                JobRecord(
                    job_id=request.target,
                    state=JobState.CANCELLED,
                    method=METHOD_JOB_CANCEL,
                    printer="",
                    params=b"",
                    reply_to="",
                    correlation=b"",
                    deadline=None,
                    final_reply=failed,
                    error_code=ErrorCode.CANCELLED,
                    received_at=now,
                    updated_at=now,
                )
            )
            answer(encode(Done(job_id=request.job_id, at=now)))
            return Admission()
        if target.printer not in self.printers:
            answer(_failed(request.job_id, ErrorCode.NOT_FOUND, f"no job {request.target!r} here"))
            return Admission()
        if target.state in STARTABLE:
            failed = _failed(
                target.job_id, ErrorCode.CANCELLED, f"cancelled by job.cancel {request.job_id}"
            )
            tx.transition(
                target.job_id,
                JobState.CANCELLED,
                expect=STARTABLE,
                final_reply=failed,
                error_code=ErrorCode.CANCELLED,
            )
            tx.reply(target.job_id, target.reply_to, target.correlation, failed)
        elif target.state is not JobState.CANCELLED:  # cancelling twice is still "cancelled"
            answer(
                _failed(
                    request.job_id,
                    ErrorCode.CONFLICT,
                    f"job {target.job_id} is {target.state.value.replace('_', ' ')}: "
                    "too late to cancel",
                )
            )
            return Admission()
        answer(encode(Done(job_id=request.job_id, at=time.time())))
        return Admission(cancelled=target)

    # --- recovery --------------------------------------------------------------------------

    async def recover(self) -> dict[str, int]:
        """Settle what a previous run left: ``printing`` becomes ``outcome_unknown``; ``received``
        and ``waiting`` resume, or expire when their deadline has passed. Call before the first
        session."""

        def op(tx: Tx) -> tuple[list[JobRecord], dict[str, int]]:
            now = time.time()
            counts = {"outcome_unknown": 0, "expired": 0, "failed": 0, "resumed": 0}
            for job in tx.in_state(JobState.PRINTING):
                failed = _failed(job.job_id, ErrorCode.OUTCOME_UNKNOWN, OUTCOME_UNKNOWN_TEXT)
                end(tx, job, JobState.OUTCOME_UNKNOWN, failed, ErrorCode.OUTCOME_UNKNOWN)
                counts["outcome_unknown"] += 1
            resume = []
            for job in tx.in_state(*STARTABLE):
                if job.deadline is not None and now > job.deadline:
                    text = "the deadline passed while the agent was stopped"
                    failed = _failed(job.job_id, ErrorCode.EXPIRED, text)
                    end(tx, job, JobState.EXPIRED, failed, ErrorCode.EXPIRED, STARTABLE)
                    counts["expired"] += 1
                elif job.printer not in self.printers:
                    text = f"agent {self._agent_id} has no printer {job.printer!r} any more"
                    failed = _failed(job.job_id, ErrorCode.PRINTER_NOT_FOUND, text)
                    end(tx, job, JobState.FAILED, failed, ErrorCode.PRINTER_NOT_FOUND, STARTABLE)
                    counts["failed"] += 1
                else:
                    resume.append(job)
            counts["resumed"] = len(resume)
            return resume, counts

        resume, counts = await self._ledger.call(op)
        for job in resume:
            slot = self.printers[job.printer]
            if job.state is JobState.WAITING and job.error_code:
                slot.announced[job.job_id] = ErrorCode(job.error_code)  # heard before the stop
            slot.enqueue(job)
        if any(counts.values()):
            log.info("recovered from the ledger: %s", counts)
        return counts

    # --- printing --------------------------------------------------------------------------

    async def run_printer(self, slot: PrinterSlot) -> None:
        """One printer's worker: its jobs one at a time, in order; ends between jobs on close."""
        await Worker(
            self._ledger, slot, self._render_job, self._on_change, lambda: self._closing
        ).run()

    def close(self) -> None:
        """Take no further job from the queues (the one printing finishes)."""
        self._closing = True

    def _render_job(self, job: JobRecord) -> Awaitable[bytes] | bytes:
        # A test page is a cached template with the id and time filled in: not worth a
        # thread hop. Content (images, many copies) is rendered off the loop.
        if job.method == METHOD_PRINTER_TEST:
            return render_test_page(
                branch_id=self._branch_id,
                agent_id=self._agent_id,
                printer=job.printer,
                job_id=job.job_id,
            )
        params = self._decoded.get(job.job_id)  # kept while held: it may render again
        return asyncio.to_thread(self._render, job, params)

    @staticmethod
    def _render(job: JobRecord, params: PrintJobParams | None) -> bytes:
        if params is None:  # resumed from the ledger: decoded here, once
            try:
                decoded = decode_params(Request(method=job.method, params=msgspec.Raw(job.params)))
            except ProtocolError as exc:
                raise ValueError(exc.message) from exc
            assert isinstance(decoded, PrintJobParams)
            params = decoded
        return render_content(params.content, copies=params.copies)

    # --- housekeeping ----------------------------------------------------------------------

    async def prune(self, retention_s: float) -> int:
        """Forget jobs that ended more than ``retention_s`` ago."""
        removed = await self._ledger.call(lambda tx: tx.prune(time.time() - retention_s))
        if removed:
            log.info("pruned %d ledger entries older than %.0f s", removed, retention_s)
        return removed


def _refuse(
    tx: Tx, job_id: str | None, topic: str, correlation: bytes | None, payload: bytes
) -> Admission:
    tx.reply(job_id, topic, correlation, payload)
    return Admission()
