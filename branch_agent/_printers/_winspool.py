"""The platform seam for the Windows print spooler: the only module that calls ``win32print``.

:class:`Spooler` is the handful of spooler operations the ``win32`` backend needs; on Windows
:class:`Win32Spooler` does them with pywin32, and tests run the backend's whole logic on Linux
against a fake of this interface. Every pywin32 error leaves this module as a
:class:`SpoolerError` carrying the Win32 error number.

The calls are the documented raw-printing sequence (``OpenPrinter``, ``StartDocPrinter`` with
datatype ``RAW``, ``StartPagePrinter``, ``WritePrinter``, ``EndPagePrinter``, ``EndDocPrinter``;
``AbortPrinter`` when writing fails, so a half-written job never reaches the printer), then
``GetJob`` level 1 to follow the job and ``SetJob(JOB_CONTROL_DELETE)`` to cancel it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from protocol import ErrorCode

from ._base import PrinterError

# winerror.h
ERROR_INVALID_PARAMETER = 87  # GetJob: no such job (it has left the queue)
ERROR_INVALID_PRINTER_NAME = 1801
# winspool.h
PRINTER_ACCESS_USE = 0x8
JOB_CONTROL_DELETE = 5


class SpoolerError(Exception):
    """A spooler call failed; ``winerror`` is the Win32 error number (0 when unknown)."""

    def __init__(self, winerror: int, call: str, message: str) -> None:
        super().__init__(f"{call}: {message} (error {winerror})")
        self.winerror = winerror
        self.call = call


@dataclass(frozen=True)
class QueueState:
    """A printer's ``PRINTER_INFO_2.Status`` bits, and the OR of its queued jobs' status bits."""

    status: int = 0
    jobs: int = 0
    job_status: int = 0


@dataclass(frozen=True)
class JobState:
    """One spooler job: ``JOB_INFO_1.Status`` bits and the driver's status text."""

    status: int
    text: str = ""


class Spooler(Protocol):
    def default_printer(self) -> str:
        """The user's default printer."""
        ...

    def queue(self, printer: str) -> QueueState:
        """The printer's status bits and its queued jobs'."""
        ...

    def submit(self, printer: str, document: str, data: bytes) -> int:
        """Spool ``data`` as one RAW job named ``document``; returns the spooler's job id."""
        ...

    def job(self, printer: str, job_id: int) -> JobState | None:
        """The job's state, or None once it has left the queue."""
        ...

    def cancel(self, printer: str, job_id: int) -> None:
        """Delete the job from the queue (nothing more of it reaches the printer)."""
        ...


def open_spooler() -> Spooler:
    """The real spooler (Windows with pywin32), or a PrinterError that says how to get it."""
    try:
        import pywintypes
        import win32print
    except ImportError as exc:
        raise PrinterError(
            ErrorCode.PRINTER_ERROR,
            "Windows spooler printers need pywin32, on Windows only: install the `windows` "
            "extra (pip install 'printermaster[windows]')",
        ) from exc
    return Win32Spooler(win32print, pywintypes.error)


class Win32Spooler:
    """:class:`Spooler` through pywin32's ``win32print`` (given as a module, for testing)."""

    def __init__(self, win32print: Any, error: type[BaseException]) -> None:
        self._w = win32print
        self._error = error

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._w, name)(*args)
        except self._error as exc:
            winerror = int(getattr(exc, "winerror", 0) or 0)
            raise SpoolerError(winerror, name, str(getattr(exc, "strerror", exc))) from exc

    def _open(self, printer: str) -> Any:
        return self._call("OpenPrinter", printer, {"DesiredAccess": PRINTER_ACCESS_USE})

    def default_printer(self) -> str:
        return str(self._call("GetDefaultPrinter"))

    def queue(self, printer: str) -> QueueState:
        handle = self._open(printer)
        try:
            info = self._call("GetPrinter", handle, 2)
            jobs = int(info.get("cJobs", 0))
            job_status = 0
            if jobs:
                for job in self._call("EnumJobs", handle, 0, min(jobs, 64), 1):
                    job_status |= int(job.get("Status", 0))
            return QueueState(int(info.get("Status", 0)), jobs, job_status)
        finally:
            self._call("ClosePrinter", handle)

    def submit(self, printer: str, document: str, data: bytes) -> int:
        handle = self._open(printer)
        try:
            job_id = int(self._call("StartDocPrinter", handle, 1, (document, None, "RAW")))
            try:
                self._call("StartPagePrinter", handle)
                self._call("WritePrinter", handle, data)
                self._call("EndPagePrinter", handle)
            except SpoolerError:
                self._call("AbortPrinter", handle)
                raise
            self._call("EndDocPrinter", handle)
            return job_id
        finally:
            self._call("ClosePrinter", handle)

    def job(self, printer: str, job_id: int) -> JobState | None:
        handle = self._open(printer)
        try:
            info = self._call("GetJob", handle, job_id, 1)
        except SpoolerError as exc:
            if exc.winerror == ERROR_INVALID_PARAMETER:
                return None
            raise
        finally:
            self._call("ClosePrinter", handle)
        return JobState(int(info.get("Status", 0)), str(info.get("pStatus") or ""))

    def cancel(self, printer: str, job_id: int) -> None:
        handle = self._open(printer)
        try:
            self._call("SetJob", handle, job_id, 0, None, JOB_CONTROL_DELETE)
        finally:
            self._call("ClosePrinter", handle)
