"""Windows spooler printers: raw ESC/POS spooled as one job, then followed until it is done.

A job is done when the spooler says so: the job leaves the queue, or is marked ``COMPLETE`` /
``PRINTED`` (a queue that keeps printed documents), meaning the port monitor handed every byte
to the printer. Until then the backend watches the job's and the printer's status bits:

* paper out, cover open, offline or an error on the job or the printer fail the job at once
  with that code, and the job is cancelled, so it cannot print late when the fault clears;
* a job still in the queue after ``timeout`` is cancelled and fails: ``PRINTER_OFFLINE``
  (nothing printed) when the spooler never started sending it, ``OUTCOME_UNKNOWN`` (it may be
  partly printed) when it had;
* a job deleted in the queue by someone else, or lost track of, is ``OUTCOME_UNKNOWN``: the
  spooler may have handed bytes to the printer, so it is never reported as a clean failure.

This is what the CUPS backend does with CUPS jobs. The spooler gives no ``DLE EOT`` channel:
the status is the spooler's view of the printer and of its jobs (paper out comes from the
printer's bits when its driver sets them, else from a job's ``PAPEROUT`` bit set by the port
monitor). All spooler calls go through :mod:`._winspool`, the platform seam.
"""

from __future__ import annotations

import time
from typing import ClassVar

from protocol import ErrorCode

from ._base import PrinterError, PrinterReading
from ._serialized import SerializedBackend
from ._winspool import QueueState, Spooler, SpoolerError, open_spooler

# PRINTER_STATUS_* flags from winspool.h
_STATUS_PAUSED = 0x1
_STATUS_ERROR = 0x2
_STATUS_PAPER_JAM = 0x8
_STATUS_PAPER_OUT = 0x10
_STATUS_PAPER_PROBLEM = 0x40
_STATUS_OFFLINE = 0x80
_STATUS_NOT_AVAILABLE = 0x1000
_STATUS_DOOR_OPEN = 0x400000

# JOB_STATUS_* flags from winspool.h
JOB_PAUSED = 0x1
JOB_ERROR = 0x2
JOB_DELETING = 0x4
JOB_SPOOLING = 0x8
JOB_PRINTING = 0x10
JOB_OFFLINE = 0x20
JOB_PAPEROUT = 0x40
JOB_PRINTED = 0x80
JOB_DELETED = 0x100
JOB_BLOCKED_DEVQ = 0x200
JOB_USER_INTERVENTION = 0x400
JOB_COMPLETE = 0x1000

_JOB_FAULTS = JOB_ERROR | JOB_OFFLINE | JOB_PAPEROUT | JOB_BLOCKED_DEVQ | JOB_USER_INTERVENTION


def reading_from_spooler_status(status: int, job_status: int = 0) -> PrinterReading:
    """Map a printer's ``Status`` bits (and the OR of its jobs' bits) to a reading."""
    offline = bool(status & (_STATUS_OFFLINE | _STATUS_NOT_AVAILABLE | _STATUS_PAUSED))
    paper_out = bool(status & (_STATUS_PAPER_OUT | _STATUS_PAPER_PROBLEM)) or bool(
        job_status & JOB_PAPEROUT
    )
    cover_open = bool(status & _STATUS_DOOR_OPEN)
    error = bool(status & (_STATUS_ERROR | _STATUS_PAPER_JAM))
    online = not offline and not (error and not (paper_out or cover_open))
    detail = f"spooler status 0x{status:x}" if status else ""
    if job_status & _JOB_FAULTS:
        detail = ", ".join(filter(None, [detail, f"a queued job has status 0x{job_status:x}"]))
    return PrinterReading(
        online=online,
        paper="out" if paper_out else "unknown",
        cover_open=cover_open,
        detail=detail,
    )


class Win32Printer(SerializedBackend):
    kind: ClassVar[str] = "win32"

    def __init__(
        self,
        name: str,
        printer_name: str = "",
        *,
        timeout: float = 60.0,
        poll_interval: float = 0.1,
        spooler: Spooler | None = None,
    ) -> None:
        super().__init__(name)
        self.printer_name = printer_name
        self.timeout = timeout
        self.poll_interval = poll_interval
        # fails at configuration time, with the install hint, not at the first job
        self.spooler = spooler if spooler is not None else open_spooler()

    @property
    def where(self) -> str:
        return f"Windows printer {self.printer_name or '(default)'}"

    def _printer(self) -> str:
        if self.printer_name:
            return self.printer_name
        try:
            return self.spooler.default_printer()
        except SpoolerError as exc:
            raise PrinterError(
                ErrorCode.PRINTER_ERROR, f"{self.where}: no default printer: {exc}"
            ) from exc

    def _queue(self, printer: str) -> QueueState:
        try:
            return self.spooler.queue(printer)
        except SpoolerError as exc:
            raise PrinterError(ErrorCode.PRINTER_OFFLINE, f"{self.where}: {exc}") from exc

    def _status(self) -> PrinterReading:
        try:
            queue = self._queue(self._printer())
        except PrinterError as exc:
            return PrinterReading(online=False, detail=exc.message)
        return reading_from_spooler_status(queue.status, queue.job_status)

    def _write(self, data: bytes, job_id: str) -> None:
        printer = self._printer()
        queue = self._queue(printer)
        # only the printer's own bits: an old job's fault is not this job's
        reading = reading_from_spooler_status(queue.status)
        self._last_reading = reading
        blocking = reading.blocking_error()
        if blocking is not None:
            raise blocking
        self._begin()
        try:
            spooled = self.spooler.submit(printer, f"printermaster {job_id}", data)
        except SpoolerError as exc:
            # a failed write is aborted: the job never reached the printer
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE, f"{self.where}: job refused, nothing printed: {exc}"
            ) from exc
        self._wait(printer, spooled)

    def _wait(self, printer: str, spooled: int) -> None:
        where = f"{self.where} job {spooled}"
        deadline = time.monotonic() + self.timeout
        started = deleted = False
        while True:
            try:
                job = self.spooler.job(printer, spooled)
                queue = self.spooler.queue(printer) if job is not None else QueueState()
            except SpoolerError as exc:
                self._cancel(printer, spooled)
                raise PrinterError(
                    ErrorCode.OUTCOME_UNKNOWN,
                    f"{where}: lost track of the job ({exc}); it was cancelled",
                ) from exc
            if job is None or job.status & (JOB_COMPLETE | JOB_PRINTED):
                if deleted:
                    raise PrinterError(
                        ErrorCode.OUTCOME_UNKNOWN,
                        f"{where} was deleted in the spooler before it completed",
                    )
                return
            deleted = deleted or bool(job.status & (JOB_DELETING | JOB_DELETED))
            started = started or bool(job.status & JOB_PRINTING)
            fault = None if deleted else self._fault(where, job.status, job.text, queue.status)
            if fault is not None:
                self._cancel(printer, spooled)
                self._last_reading = reading_from_spooler_status(queue.status, job.status)
                raise fault
            if time.monotonic() >= deadline:
                if deleted:
                    raise PrinterError(
                        ErrorCode.OUTCOME_UNKNOWN, f"{where} is being deleted in the spooler"
                    )
                self._cancel(printer, spooled)
                raise self._timeout_error(where, started, job.status, job.text)
            time.sleep(self.poll_interval)

    def _fault(
        self, where: str, job_status: int, text: str, printer_status: int
    ) -> PrinterError | None:
        """The error a fault bit on the job or the printer means, or None while all is well."""
        reading = reading_from_spooler_status(printer_status, job_status)
        detail = f"{where}: {text or f'status 0x{job_status:x}'}; cancelled"
        if reading.paper == "out":
            return PrinterError(ErrorCode.PAPER_OUT, f"{detail} (paper out)")
        if reading.cover_open:
            return PrinterError(ErrorCode.COVER_OPEN, f"{detail} (cover open)")
        if not reading.online or job_status & JOB_OFFLINE:
            # the port monitor could not reach the printer: nothing went out
            return PrinterError(ErrorCode.PRINTER_OFFLINE, f"{detail} (printer offline)")
        if job_status & _JOB_FAULTS:
            return PrinterError(
                ErrorCode.OUTCOME_UNKNOWN, f"{detail}; the ticket may be partly printed"
            )
        return None

    def _timeout_error(self, where: str, started: bool, status: int, text: str) -> PrinterError:
        detail = text or f"status 0x{status:x}"
        if not started:
            return PrinterError(
                ErrorCode.PRINTER_OFFLINE,
                f"{where} still queued after {self.timeout}s ({detail}); cancelled, "
                "nothing printed",
            )
        return PrinterError(
            ErrorCode.OUTCOME_UNKNOWN,
            f"{where} still printing after {self.timeout}s ({detail}); cancelled, "
            "the ticket may be partly printed",
        )

    def _cancel(self, printer: str, spooled: int) -> None:
        try:
            self.spooler.cancel(printer, spooled)
        except SpoolerError:
            pass  # already finished or gone: nothing left that could print late
