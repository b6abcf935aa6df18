"""The ``win32`` backend's Windows code paths, run here with the spooler faked at the seam.

:class:`FakeSpooler` stands in for :class:`branch_agent._printers._winspool.Spooler`: the job a
test submits walks through the status bits the test scripts, one step per poll, as the Windows
spooler reports them. :class:`Win32Spooler` itself is run against a fake ``win32print`` module
that records the calls, so the raw-printing call sequence is checked too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from branch_agent._printers import PrinterError
from branch_agent._printers._win32 import (
    JOB_COMPLETE,
    JOB_DELETING,
    JOB_ERROR,
    JOB_OFFLINE,
    JOB_PAPEROUT,
    JOB_PRINTED,
    JOB_PRINTING,
    JOB_SPOOLING,
    Win32Printer,
)
from branch_agent._printers._winspool import (
    ERROR_INVALID_PARAMETER,
    JOB_CONTROL_DELETE,
    JobState,
    QueueState,
    SpoolerError,
    Win32Spooler,
)
from protocol import ErrorCode

JOB = b"\x1b@hello\n\x1dV\x00"
GONE = None  # the job has left the queue

# PRINTER_STATUS_* bits
PAUSED, PAPER_OUT, OFFLINE, DOOR_OPEN = 0x1, 0x10, 0x80, 0x400000


@dataclass
class FakeSpooler:
    """One printer queue. ``script`` is the job's status per poll; the last entry repeats."""

    script: list[int | None] = field(default_factory=lambda: [JOB_SPOOLING, JOB_PRINTING, GONE])
    printer_status: int = 0
    #: the printer's status bits from the n-th poll of a running job on (paper runs out mid-job)
    printer_status_later: tuple[int, int] | None = None
    refuse: SpoolerError | None = None
    default: str = "POS-80C"
    submitted: list[tuple[str, str, bytes]] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    polls: int = 0
    other_jobs_status: int = 0

    def default_printer(self) -> str:
        return self.default

    def queue(self, printer: str) -> QueueState:
        status = self.printer_status
        if self.printer_status_later and self.polls >= self.printer_status_later[0]:
            status = self.printer_status_later[1]
        return QueueState(status, 1 if self.other_jobs_status else 0, self.other_jobs_status)

    def submit(self, printer: str, document: str, data: bytes) -> int:
        if self.refuse is not None:
            raise self.refuse
        self.submitted.append((printer, document, data))
        return 41 + len(self.submitted)

    def job(self, printer: str, job_id: int) -> JobState | None:
        if job_id in self.cancelled:
            return None
        step = self.script[min(self.polls, len(self.script) - 1)]
        self.polls += 1
        return None if step is None else JobState(step, "")

    def cancel(self, printer: str, job_id: int) -> None:
        self.cancelled.append(job_id)


def backend(spooler: FakeSpooler, timeout: float = 5.0, name: str = "POS-80C") -> Win32Printer:
    return Win32Printer("POS", name, timeout=timeout, poll_interval=0.01, spooler=spooler)


def failure(printer: Win32Printer) -> PrinterError:
    with pytest.raises(PrinterError) as caught:
        printer.write(JOB, "job-1")
    return caught.value


def test_job_that_leaves_the_queue_is_printed() -> None:
    spooler = FakeSpooler(script=[JOB_SPOOLING, JOB_PRINTING, JOB_PRINTING, GONE])
    backend(spooler).write(JOB, "job-1")
    assert spooler.submitted == [("POS-80C", "printermaster job-1", JOB)]
    assert spooler.polls == 4, "returned before the spooler finished the job"
    assert spooler.cancelled == []


def test_kept_printed_document_counts_as_printed() -> None:
    spooler = FakeSpooler(script=[JOB_PRINTING, JOB_PRINTED | JOB_COMPLETE])
    backend(spooler).write(JOB, "job-1")
    assert spooler.cancelled == []


def test_default_printer_when_no_name() -> None:
    spooler = FakeSpooler(default="Receipt")
    backend(spooler, name="").write(JOB, "job-1")
    assert spooler.submitted[0][0] == "Receipt"


def test_paper_out_on_the_job_fails_it_and_cancels_it() -> None:
    spooler = FakeSpooler(script=[JOB_PRINTING, JOB_PRINTING | JOB_ERROR | JOB_PAPEROUT])
    printer = backend(spooler)
    error = failure(printer)
    assert error.code is ErrorCode.PAPER_OUT
    assert spooler.cancelled == [42]
    # the status the agent reports says so too (the fault came from the job's bits)
    assert printer._last_reading.paper == "out"


def test_paper_out_on_the_printer_mid_job_fails_it() -> None:
    spooler = FakeSpooler(script=[JOB_PRINTING], printer_status_later=(3, PAPER_OUT))
    error = failure(backend(spooler))
    assert error.code is ErrorCode.PAPER_OUT
    assert spooler.cancelled == [42]


def test_offline_port_fails_the_job_as_offline_and_cancels_it() -> None:
    spooler = FakeSpooler(script=[JOB_SPOOLING, JOB_PRINTING | JOB_ERROR | JOB_OFFLINE])
    error = failure(backend(spooler))
    assert error.code is ErrorCode.PRINTER_OFFLINE and error.info().retryable
    assert spooler.cancelled == [42]


def test_other_job_error_is_a_printer_error_that_may_be_partly_printed() -> None:
    spooler = FakeSpooler(script=[JOB_PRINTING, JOB_PRINTING | JOB_ERROR])
    error = failure(backend(spooler))
    assert error.code is ErrorCode.OUTCOME_UNKNOWN and "partly printed" in error.message
    assert spooler.cancelled == [42]


def test_job_stuck_in_the_queue_is_cancelled_at_the_timeout() -> None:
    spooler = FakeSpooler(script=[JOB_SPOOLING, 0])
    started = time.monotonic()
    error = failure(backend(spooler, timeout=0.3))
    took = time.monotonic() - started
    assert error.code is ErrorCode.PRINTER_OFFLINE
    assert "nothing printed" in error.message and "0.3s" in error.message
    assert spooler.cancelled == [42]
    assert took >= 0.3


def test_job_stuck_printing_is_cancelled_and_may_be_partly_printed() -> None:
    spooler = FakeSpooler(script=[JOB_SPOOLING, JOB_PRINTING])
    error = failure(backend(spooler, timeout=0.2))
    assert error.code is ErrorCode.OUTCOME_UNKNOWN and "partly printed" in error.message
    assert spooler.cancelled == [42]


def test_job_deleted_by_someone_else_is_not_printed() -> None:
    spooler = FakeSpooler(script=[JOB_PRINTING, JOB_PRINTING | JOB_DELETING, GONE])
    error = failure(backend(spooler))
    assert error.code is ErrorCode.OUTCOME_UNKNOWN and "deleted" in error.message
    assert spooler.cancelled == []


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (PAPER_OUT, ErrorCode.PAPER_OUT),
        (DOOR_OPEN, ErrorCode.COVER_OPEN),
        (OFFLINE, ErrorCode.PRINTER_OFFLINE),
        (PAUSED, ErrorCode.PRINTER_OFFLINE),
    ],
)
def test_blocked_printer_gets_no_job(status: int, code: ErrorCode) -> None:
    spooler = FakeSpooler(printer_status=status)
    assert failure(backend(spooler)).code is code
    assert spooler.submitted == []


def test_an_old_jobs_fault_does_not_refuse_a_new_job() -> None:
    # the port monitor set PAPEROUT on an earlier job; the printer itself reports nothing
    spooler = FakeSpooler(other_jobs_status=JOB_PAPEROUT | JOB_ERROR)
    printer = backend(spooler)
    assert printer.status().paper == "out"  # what the cloud sees
    spooler.other_jobs_status = 0
    printer.write(JOB, "job-1")


def test_refused_job_is_offline_and_nothing_printed() -> None:
    spooler = FakeSpooler(refuse=SpoolerError(5, "WritePrinter", "Access is denied."))
    error = failure(backend(spooler))
    assert error.code is ErrorCode.PRINTER_OFFLINE and "nothing printed" in error.message


def test_status_reads_the_spooler() -> None:
    spooler = FakeSpooler(printer_status=OFFLINE)
    reading = backend(spooler).status()
    assert not reading.online and "0x80" in reading.detail


# --- Win32Spooler against a fake win32print ---------------------------------------------------


class FakeWinError(Exception):
    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


class FakeWin32Print:
    """Records the calls; ``fail`` names a call that raises like pywin32 does."""

    def __init__(self, fail: str | None = None, jobs: dict[int, dict[str, Any]] | None = None):
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail
        self.jobs = jobs or {}

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> Any:
            self.calls.append((name, *args))
            if name == self.fail:
                raise FakeWinError(1167, name, "The device is not connected.")
            match name:
                case "OpenPrinter":
                    return "h"
                case "StartDocPrinter":
                    return 7
                case "GetPrinter":
                    return {"Status": 0x10, "cJobs": 2}
                case "EnumJobs":
                    return [{"Status": JOB_PRINTING}, {"Status": JOB_PAPEROUT}]
                case "GetJob":
                    if args[1] not in self.jobs:
                        raise FakeWinError(ERROR_INVALID_PARAMETER, name, "bad parameter")
                    return self.jobs[args[1]]
            return None

        return call


def names(w: FakeWin32Print) -> Iterator[str]:
    return (c[0] for c in w.calls)


def test_win32_spooler_spools_one_raw_job() -> None:
    w = FakeWin32Print()
    assert Win32Spooler(w, FakeWinError).submit("POS-80C", "printermaster j", JOB) == 7
    assert list(names(w)) == [
        "OpenPrinter",
        "StartDocPrinter",
        "StartPagePrinter",
        "WritePrinter",
        "EndPagePrinter",
        "EndDocPrinter",
        "ClosePrinter",
    ]
    assert w.calls[1] == ("StartDocPrinter", "h", 1, ("printermaster j", None, "RAW"))
    assert w.calls[3] == ("WritePrinter", "h", JOB)


def test_win32_spooler_aborts_a_job_whose_write_fails() -> None:
    w = FakeWin32Print(fail="WritePrinter")
    with pytest.raises(SpoolerError) as caught:
        Win32Spooler(w, FakeWinError).submit("POS-80C", "printermaster j", JOB)
    assert caught.value.winerror == 1167
    assert "AbortPrinter" in names(w) and "EndDocPrinter" not in names(w)
    assert list(names(w))[-1] == "ClosePrinter"


def test_win32_spooler_follows_and_cancels_jobs() -> None:
    w = FakeWin32Print(jobs={7: {"Status": JOB_PRINTING, "pStatus": "Printing"}})
    spooler = Win32Spooler(w, FakeWinError)
    assert spooler.job("POS-80C", 7) == JobState(JOB_PRINTING, "Printing")
    assert spooler.job("POS-80C", 8) is None  # left the queue
    spooler.cancel("POS-80C", 7)
    assert ("SetJob", "h", 7, 0, None, JOB_CONTROL_DELETE) in w.calls
    assert spooler.queue("POS-80C") == QueueState(0x10, 2, JOB_PRINTING | JOB_PAPEROUT)
    assert list(names(w)).count("OpenPrinter") == list(names(w)).count("ClosePrinter")
