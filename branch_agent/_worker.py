"""One printer's worker: its jobs one at a time, in order, each to a truthful end.

The rules (docs/agent-ledger.md):

* **Never start late.** The point of no return (``received``/``waiting`` -> ``printing``, with
  its ``printing`` reply) is committed by the backend's thread *after* it took the printer and
  checked it, just before the first byte, and refused there when the deadline has passed.
* **Never write long past the deadline.** The deadline is the latest start; every step before
  the start is bounded by it, every step of the write by the deadline plus the slot's write
  allowance (``ticket.write_until``); a backend still busy past its bound (the deadline while
  the job has not started, ``write_until`` once it has) is stopped (``ticket.stopped``,
  ``backend.abort()``).
* **Report what is known.** An error before the first byte is a clean failure (or ``EXPIRED``);
  after it, the ticket may be on paper: ``OUTCOME_UNKNOWN``.
* **Hold, don't fail, a print job the printer cannot take** (offline, out of paper, cover open):
  it becomes ``waiting`` (reply ``waiting`` with the condition), is announced again when the
  condition changes, and is tried again when the status poll sees the printer ready — or ends
  ``EXPIRED`` at its deadline. Test prints are never held.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from protocol import (
    METHOD_PRINT_JOB,
    Done,
    ErrorCode,
    ErrorInfo,
    Failed,
    Printing,
    PrintResult,
    Reply,
    Waiting,
    encode,
    error_info,
)

from ._ledger import JobRecord, JobState, Ledger, Tx
from ._printers import PrinterError
from ._printers._base import DeadlinePassed, JobTaken, WriteTicket
from ._slot import HOLD_CODES, PrinterSlot, condition_of, reading_for

log = logging.getLogger("branch_agent.jobs")

#: Seconds past a job's ``write_until`` its write may run before the agent cuts it off
#: (backends bound every step by it themselves; this is the net under them).
ABORT_GRACE_S = 0.5
#: Longest the backend's thread waits for the start to be committed.
START_TIMEOUT_S = 60.0
#: States a job can start from.
STARTABLE = (JobState.RECEIVED, JobState.WAITING)


def waiting_info(code: ErrorCode, text: str = "") -> ErrorInfo:
    """What a held job waits for; retryable: it resolves by itself when the printer is ready."""
    default = {
        ErrorCode.PRINTER_OFFLINE: "printer is offline",
        ErrorCode.PAPER_OUT: "printer is out of paper",
        ErrorCode.COVER_OPEN: "printer cover is open",
    }.get(code, code.value)
    return ErrorInfo(code=code, message=text or default, retryable=True)


def end(
    tx: Tx,
    job: JobRecord,
    state: JobState,
    reply: bytes,
    code: ErrorCode | None = None,
    expect: JobState | tuple[JobState, ...] = JobState.PRINTING,
) -> bool:
    """Final transition plus its reply, to whoever asked last."""
    current = tx.current(job)
    if not tx.transition(job.job_id, state, expect=expect, final_reply=reply, error_code=code):
        return False
    tx.reply(job.job_id, current.reply_to, current.correlation, reply)
    return True


def _failed(job_id: str, code: ErrorCode, text: str) -> bytes:
    return encode(Failed(job_id=job_id, at=time.time(), error=error_info(code, text)))


class Worker:
    """Runs one printer's jobs; ``render`` turns a job into bytes (may raise ValueError)."""

    def __init__(
        self,
        ledger: Ledger,
        slot: PrinterSlot,
        render: Callable[[JobRecord], Awaitable[bytes] | bytes],
        on_change: Callable[[], None],
        closing: Callable[[], bool],
    ) -> None:
        self._ledger = ledger
        self.slot = slot
        self._render = render
        self._on_change = on_change
        self._closing = closing

    async def run(self) -> None:
        slot = self.slot
        while not self._closing():
            job = await self._next()
            if job is None:
                continue
            slot.busy = job.job_id
            self._on_change()
            try:
                await self._print(job)
            except Exception:  # a bug here must not stop the printer's queue
                log.exception("job %s: unexpected error", job.job_id)
                slot.discard(job.job_id)
            finally:
                slot.busy = None
                self._on_change()

    # --- choosing the next job --------------------------------------------------------------

    async def _next(self) -> JobRecord | None:
        """The next job to try, once something can be tried; None to look again."""
        slot = self.slot
        await self._expire_held()
        if slot.held:
            await self._announce_changes()
            if slot.releasing:
                return slot.held[0]
        job = slot.next_queued()
        if job is not None:
            if slot.held and job.method == METHOD_PRINT_JOB:
                # behind jobs held for this printer: held too, in order
                await self._hold(job, slot.held_condition or ErrorCode.PRINTER_OFFLINE, "")
                return None
            return job
        deadlines = [j.deadline for j in slot.held if j.deadline is not None]
        timeout = max(0.0, min(deadlines) - time.time()) if deadlines else None
        await slot.wait(timeout)
        return None

    async def _expire_held(self) -> None:
        now = time.time()
        late = [j for j in self.slot.held if j.deadline is not None and now > j.deadline]
        for job in late:
            text = "the deadline passed while the job waited for its printer; nothing was printed"
            failed = _failed(job.job_id, ErrorCode.EXPIRED, text)
            await self._ledger.call(
                functools.partial(
                    end,
                    job=job,
                    state=JobState.EXPIRED,
                    reply=failed,
                    code=ErrorCode.EXPIRED,
                    expect=STARTABLE,
                )
            )
            self.slot.discard(job.job_id)
            self._on_change()

    async def _announce_changes(self) -> None:
        """Held jobs hear again when what they wait for changed."""
        code = condition_of(self.slot.reading)
        if code is None or code not in HOLD_CODES:
            return
        for job in list(self.slot.held):
            if self.slot.announced.get(job.job_id) is not code:
                await self._hold(job, code, self.slot.reading.detail)

    async def _hold(self, job: JobRecord, code: ErrorCode, text: str) -> None:
        """Mark ``job`` waiting for ``code`` (announced once per condition), keep it in order."""
        slot = self.slot
        if slot.announced.get(job.job_id) is not code:
            info = waiting_info(code, text if code is ErrorCode.PRINTER_OFFLINE else "")

            def op(tx: Tx) -> bool:
                if not tx.transition(
                    job.job_id, JobState.WAITING, expect=STARTABLE, error_code=code
                ):
                    return False
                current = tx.current(job)
                waiting = encode(Waiting(job_id=job.job_id, at=time.time(), error=info))
                tx.reply(job.job_id, current.reply_to, current.correlation, waiting)
                return True

            if not await self._ledger.call(op):
                slot.discard(job.job_id)  # cancelled meanwhile
                return
            slot.announced[job.job_id] = code
            log.info("job %s waits for its printer: %s", job.job_id, code)
        slot.held_condition = code
        if job not in slot.held:
            slot.held.append(job)

    # --- one job ----------------------------------------------------------------------------

    async def _print(self, job: JobRecord) -> None:
        slot = self.slot
        if job.deadline is not None and time.time() > job.deadline:
            failed = _failed(job.job_id, ErrorCode.EXPIRED, "deadline passed while queued")
            await self._ledger.call(
                lambda tx: end(tx, job, JobState.EXPIRED, failed, ErrorCode.EXPIRED, STARTABLE)
            )
            slot.discard(job.job_id)
            return
        try:
            rendered = self._render(job)
            data = rendered if isinstance(rendered, bytes) else await rendered
        except ValueError as exc:
            failed = _failed(job.job_id, ErrorCode.INVALID_REQUEST, f"cannot render: {exc}")
            await self._ledger.call(
                lambda tx: end(
                    tx, job, JobState.FAILED, failed, ErrorCode.INVALID_REQUEST, STARTABLE
                )
            )
            slot.discard(job.job_id)
            return
        loop = asyncio.get_running_loop()
        ticket = WriteTicket(
            job.job_id,
            job.deadline,
            start=lambda: self._start(loop, job),
            allowance=slot.write_allowance,
        )
        started = time.perf_counter()
        error = await self._write(job, data, ticket)
        if isinstance(error, JobTaken):
            log.info("job %s not started: it left the received state", job.job_id)
            slot.discard(job.job_id)
            return
        if error is None:
            await self._printed(job, data, started)
        elif not ticket.started:
            await self._refused(job, error)
        else:
            await self._broken_off(job, error, ticket)

    def _start(self, loop: asyncio.AbstractEventLoop, job: JobRecord) -> None:
        """The point of no return, on the backend's thread: committed before the first byte."""
        future = asyncio.run_coroutine_threadsafe(self._ledger.call(self._start_op(job)), loop)
        try:
            outcome = future.result(timeout=START_TIMEOUT_S)
        except TimeoutError as exc:  # the agent is stopping: send nothing
            future.cancel()
            raise PrinterError(
                ErrorCode.PRINTER_ERROR, "the ledger did not record the start; nothing was sent"
            ) from exc
        self._check_started(outcome, job)
        loop.call_soon_threadsafe(self._started, job)

    @staticmethod
    def _start_op(job: JobRecord) -> Callable[[Tx], str]:
        def op(tx: Tx) -> str:
            if job.deadline is not None and time.time() > job.deadline:
                return "late"
            if not tx.transition(job.job_id, JobState.PRINTING, expect=STARTABLE):
                return "taken"  # cancelled, expired or already taken
            current = tx.current(job)
            printing = encode(Printing(job_id=job.job_id, at=time.time()))
            tx.reply(job.job_id, current.reply_to, current.correlation, printing)
            return "started"

        return op

    @staticmethod
    def _check_started(outcome: str, job: JobRecord) -> None:
        if outcome == "late":
            raise DeadlinePassed("the job's deadline passed before the printer was free")
        if outcome == "taken":
            raise JobTaken(job.job_id)

    def _started(self, job: JobRecord) -> None:
        self.slot.waiting.pop(job.job_id, None)
        self.slot.held = [j for j in self.slot.held if j.job_id != job.job_id]
        self.slot.announced.pop(job.job_id, None)

    async def _write(self, job: JobRecord, data: bytes, ticket: WriteTicket) -> Exception | None:
        """Run the write; cut it off at its ``write_until``; return what it raised."""
        backend = self.slot.backend
        if not backend.blocking:  # in memory, on the loop: the start commits from here
            try:
                self._check_started(await self._ledger.call(self._start_op(job)), job)
                ticket.started = True
                self._started(job)
                backend.write(data, ticket.job_id)
                ticket.sent = len(data)
            except Exception as exc:
                return exc
            return None
        task = asyncio.ensure_future(asyncio.to_thread(backend.print_job, data, ticket))
        try:
            await self._within_bound(task, ticket)
        except TimeoutError:
            if ticket.started:
                why = f"still writing {ticket.allowance:g} s after its deadline"
            else:
                why = "not started at its deadline"
            log.warning("job %s: %s: stopped", ticket.job_id, why)
            ticket.stopped.set()
            backend.abort()
        except Exception as exc:
            return exc
        try:
            await task
        except Exception as exc:
            return exc
        return None

    @staticmethod
    async def _within_bound(task: asyncio.Future[None], ticket: WriteTicket) -> None:
        """Wait for ``task`` until the ticket's bound (+ grace): its deadline until it starts,
        its ``write_until`` after; TimeoutError when it is still running then."""
        while True:
            bound = ticket.bound
            if bound is None:
                await asyncio.shield(task)
                return
            left = bound - time.time() + ABORT_GRACE_S
            try:
                await asyncio.wait_for(asyncio.shield(task), max(left, 0.0))
                return
            except TimeoutError:
                if ticket.bound == bound:  # not started since: it never will (or ran out)
                    raise

    async def _printed(self, job: JobRecord, data: bytes, started: float) -> None:
        slot = self.slot
        slot.last_error = None
        slot.last_printed_at = time.time()
        result = PrintResult(
            printer=job.printer,
            bytes=len(data),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        payload = encode(Done(job_id=job.job_id, at=slot.last_printed_at, result=result))
        await self._ledger.call(lambda tx: end(tx, job, JobState.PRINTED, payload))

    async def _refused(self, job: JobRecord, error: Exception) -> None:
        """Nothing was sent: hold the job, or end it cleanly."""
        slot = self.slot
        exc = _as_printer_error(error, job)
        if job.deadline is not None and time.time() > job.deadline:
            exc = PrinterError(
                ErrorCode.EXPIRED, f"the deadline passed before the printer took the job ({exc})"
            )
        if exc.code in HOLD_CODES and job.method == METHOD_PRINT_JOB:
            slot.releasing = False
            if condition_of(slot.reading) is None:
                slot.reading = reading_for(exc, slot.reading)  # the poller has not seen it yet
                self._on_change()
            await self._hold(job, exc.code, exc.message)
            return
        slot.discard(job.job_id)
        if exc.code is ErrorCode.EXPIRED:
            state = JobState.EXPIRED
        else:
            state = JobState.FAILED
            slot.last_error = exc
        payload = encode(Failed(job_id=job.job_id, at=time.time(), error=exc.info()))
        await self._ledger.call(lambda tx: end(tx, job, state, payload, exc.code, STARTABLE))

    async def _broken_off(self, job: JobRecord, error: Exception, ticket: WriteTicket) -> None:
        """The point of no return was passed: bytes sent means the ticket may be on paper."""
        exc = _as_printer_error(error, job)
        self.slot.last_error = exc
        info: ErrorInfo = exc.info()
        if ticket.sent > 0 or exc.code is ErrorCode.OUTCOME_UNKNOWN:
            state, code = JobState.OUTCOME_UNKNOWN, ErrorCode.OUTCOME_UNKNOWN
            text = exc.message
            if exc.code is not ErrorCode.OUTCOME_UNKNOWN:
                text = (
                    f"{exc.message} (after {ticket.sent} bytes were sent: the ticket may be on "
                    "paper, check the printer before reprinting)"
                )
            info = error_info(code, text)
        elif exc.code is ErrorCode.EXPIRED:
            state, code = JobState.EXPIRED, ErrorCode.EXPIRED
        else:
            state, code = JobState.FAILED, exc.code
        reply: Reply = Failed(job_id=job.job_id, at=time.time(), error=info)
        payload = encode(reply)
        await self._ledger.call(lambda tx: end(tx, job, state, payload, code))


def _as_printer_error(error: Exception, job: JobRecord) -> PrinterError:
    if isinstance(error, PrinterError):
        return error
    log.error("printing job %s failed unexpectedly", job.job_id, exc_info=error)
    return PrinterError(ErrorCode.PRINTER_ERROR, f"{type(error).__name__}: {error}")
