"""CUPS printers through pycups: raw ESC/POS to a raw queue, waiting for CUPS to finish the job.

A job is done when CUPS says ``completed`` (the backend, e.g. ``socket://``, handed every byte to
the printer). Anything else within ``timeout`` (or before the job's deadline, if that is nearer)
is a failure, and the CUPS job is cancelled so a ticket never prints hours late when the printer
comes back. A job CUPS never got to the printer failed cleanly (PRINTER_OFFLINE, or EXPIRED at
its deadline); one it was sending when it broke off is OUTCOME_UNKNOWN (it may be on paper).

pycups is imported lazily (the ``cups`` extra). A configured ``server`` is made libcups' default
with ``cups.setServer`` before every connection, not passed as ``Connection(host=, port=)``:
libcups treats a connection to any server but its default as remote, and then ``printFile``
sends its request to the queue's *device* URI (``socket://...``), which fails. The setting is
per thread in libcups and the agent calls backends from worker threads, hence every time.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from protocol import ErrorCode

from ._base import DeadlinePassed, Paper, PrinterError, PrinterReading
from ._serialized import SerializedBackend

# IPP job-state and printer-state values (RFC 8011), so the mapping reads without pycups.
JOB_PENDING, JOB_HELD, JOB_PROCESSING, JOB_STOPPED = 3, 4, 5, 6
JOB_CANCELED, JOB_ABORTED, JOB_COMPLETED = 7, 8, 9
PRINTER_IDLE, PRINTER_PROCESSING, PRINTER_STOPPED = 3, 4, 5
_JOB_STATE_NAMES = {
    JOB_PENDING: "pending",
    JOB_HELD: "held",
    JOB_PROCESSING: "processing",
    JOB_STOPPED: "stopped",
    JOB_CANCELED: "canceled",
    JOB_ABORTED: "aborted",
    JOB_COMPLETED: "completed",
}

# What CUPS' network backends (socket, ipp, lpd) say while they cannot connect, in CUPS' own
# English; a cupsd running in another locale translates them and we fall back to PRINTER_ERROR.
_UNREACHABLE_MESSAGES = (
    "The printer may not exist or is unavailable at this time.",
    "The printer is not responding.",
    "Unable to locate printer",
    "Connecting to printer.",
    "Waiting for printer to become available.",
    "The printer is in use.",
    "Unable to contact printer",
)

_PRINTER_ATTRS = [
    "printer-state",
    "printer-state-reasons",
    "printer-state-message",
    "printer-is-accepting-jobs",
]
_JOB_ATTRS = ["job-state", "job-state-reasons", "job-printer-state-message"]


def import_cups() -> Any:
    """pycups, or a PrinterError that says how to install it."""
    try:
        import cups
    except ImportError as exc:
        raise PrinterError(
            ErrorCode.PRINTER_ERROR,
            "CUPS printers need pycups: install the `cups` extra "
            "(pip install 'printermaster[cups]'; it builds against libcups2-dev)",
        ) from exc
    return cups


def connect(server: str | None = None) -> Any:
    """A ``cups.Connection`` to ``server`` (``host[:port]`` or a socket path; default: libcups')."""
    cups = import_cups()
    if server:
        cups.setServer(server)
    try:
        return cups.Connection()
    except RuntimeError as exc:  # pycups: "failed to connect to server"
        raise PrinterError(ErrorCode.PRINTER_OFFLINE, f"CUPS at {cups.getServer()}: {exc}") from exc


def _reasons(attrs: dict[str, Any], key: str) -> list[str]:
    value = attrs.get(key) or []
    reasons = [value] if isinstance(value, str) else list(value)
    return [r for r in reasons if r != "none"]


def _base_reason(reason: str) -> str:
    for suffix in ("-error", "-warning", "-report"):
        if reason.endswith(suffix):
            return reason.removesuffix(suffix)
    return reason


def reading_from_printer_attributes(attrs: dict[str, Any]) -> PrinterReading:
    """Map a queue's IPP state and ``printer-state-reasons`` to a reading."""
    reasons = _reasons(attrs, "printer-state-reasons")
    bases = {_base_reason(r) for r in reasons if not r.endswith("-warning")}
    warnings = {_base_reason(r) for r in reasons if r.endswith("-warning")}
    cover_open = bool(bases & {"cover-open", "door-open", "interlock-open"})
    paper: Paper = "unknown"
    if bases & {"media-empty", "media-needed"}:
        paper = "out"
    elif (bases | warnings) & {"media-low", "media-empty"}:
        paper = "near_end"
    stopped = attrs.get("printer-state") == PRINTER_STOPPED
    accepting = attrs.get("printer-is-accepting-jobs", True)
    unreachable = bool(bases & {"offline", "shutdown", "timed-out", "connecting-to-device"})
    online = not (stopped or unreachable or not accepting)
    detail = str(attrs.get("printer-state-message") or "")
    if not online and not detail:
        detail = ", ".join(reasons) or ("queue stopped" if stopped else "not accepting jobs")
    return PrinterReading(online=online, paper=paper, cover_open=cover_open, detail=detail)


def error_from_reasons(reasons: list[str], message: str) -> PrinterError | None:
    """A specific code when CUPS names paper or cover; None otherwise."""
    bases = {_base_reason(r) for r in reasons if not r.endswith("-warning")}
    if bases & {"media-empty", "media-needed"}:
        return PrinterError(ErrorCode.PAPER_OUT, message or "printer is out of paper")
    if bases & {"cover-open", "door-open", "interlock-open"}:
        return PrinterError(ErrorCode.COVER_OPEN, message or "printer cover is open")
    return None


@dataclass(frozen=True)
class CupsQueue:
    """One CUPS queue as :func:`discover_cups_queues` sees it."""

    name: str
    device_uri: str
    info: str
    make_and_model: str
    state: int
    accepting: bool

    @property
    def is_raw(self) -> bool:
        """Raw queues have no driver; CUPS reports their model as ``Local Raw Printer``."""
        return self.make_and_model in ("", "Local Raw Printer", "Raw Queue")


def discover_cups_queues(server: str | None = None) -> list[CupsQueue]:
    """Every queue the CUPS server knows, sorted by name."""
    conn = connect(server)
    cups = import_cups()
    try:
        printers = conn.getPrinters()
    except cups.IPPError as exc:
        raise PrinterError(ErrorCode.PRINTER_ERROR, f"CUPS: listing queues failed: {exc}") from exc
    return sorted(
        (
            CupsQueue(
                name=name,
                device_uri=str(attrs.get("device-uri", "")),
                info=str(attrs.get("printer-info", "")),
                make_and_model=str(attrs.get("printer-make-and-model", "")),
                state=int(attrs.get("printer-state", 0)),
                accepting=bool(attrs.get("printer-is-accepting-jobs", True)),
            )
            for name, attrs in printers.items()
        ),
        key=lambda q: q.name,
    )


class CupsPrinter(SerializedBackend):
    kind: ClassVar[str] = "cups"

    def __init__(
        self,
        name: str,
        queue: str,
        server: str | None = None,
        timeout: float = 60.0,
        poll_interval: float = 0.1,
    ) -> None:
        super().__init__(name)
        self.queue = queue
        self.server = server
        self.timeout = timeout
        self.poll_interval = poll_interval
        import_cups()  # fail at configuration time, with the install hint, not at the first job

    def _printer_attributes(self, conn: Any) -> dict[str, Any]:
        cups = import_cups()
        try:
            attrs: dict[str, Any] = conn.getPrinterAttributes(
                self.queue, requested_attributes=_PRINTER_ATTRS
            )
        except cups.IPPError as exc:
            status = exc.args[0] if exc.args else None
            if status == cups.IPP_NOT_FOUND:
                raise PrinterError(
                    ErrorCode.PRINTER_ERROR, f"CUPS has no queue {self.queue!r}"
                ) from exc
            raise PrinterError(ErrorCode.PRINTER_ERROR, f"CUPS {self.queue}: {exc}") from exc
        except cups.HTTPError as exc:
            raise PrinterError(ErrorCode.PRINTER_OFFLINE, f"CUPS {self.queue}: {exc}") from exc
        return attrs

    def _status(self) -> PrinterReading:
        try:
            return reading_from_printer_attributes(self._printer_attributes(connect(self.server)))
        except PrinterError as exc:
            return PrinterReading(online=False, detail=exc.message)

    def _write(self, data: bytes, job_id: str) -> None:
        conn = connect(self.server)
        attrs = self._printer_attributes(conn)
        reading = reading_from_printer_attributes(attrs)
        self._last_reading = reading
        blocking = (
            error_from_reasons(_reasons(attrs, "printer-state-reasons"), reading.detail)
            or reading.blocking_error()
        )
        if blocking is not None:
            raise blocking
        self._begin()
        cups_job = self._submit(conn, data, job_id)
        self._wait(conn, cups_job)

    def _submit(self, conn: Any, data: bytes, job_id: str) -> int:
        cups = import_cups()
        fd, path = tempfile.mkstemp(prefix="pm-job-", suffix=".prn")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            job: int = conn.printFile(self.queue, path, job_id, {"raw": "true"})
            return job
        except (cups.IPPError, cups.HTTPError) as exc:
            raise PrinterError(
                ErrorCode.PRINTER_ERROR, f"CUPS {self.queue}: job refused: {exc}"
            ) from exc
        finally:
            os.unlink(path)

    def _wait(self, conn: Any, cups_job: int) -> None:
        cups = import_cups()
        limit = self.timeout
        with contextlib.suppress(DeadlinePassed):
            limit = self._step(self.timeout)
        deadline = time.monotonic() + limit
        state, attrs = JOB_PENDING, {}
        try:
            while True:
                attrs = conn.getJobAttributes(cups_job, requested_attributes=_JOB_ATTRS)
                state = int(attrs.get("job-state", JOB_PENDING))
                if state >= JOB_STOPPED or time.monotonic() >= deadline:
                    break
                time.sleep(self.poll_interval)
        except (cups.IPPError, cups.HTTPError) as exc:
            self._cancel(conn, cups_job)
            raise PrinterError(
                ErrorCode.OUTCOME_UNKNOWN,
                f"CUPS {self.queue}: lost track of job {cups_job}: {exc}; it was cancelled, "
                "but may be on paper: check the printer before reprinting",
            ) from exc
        if state == JOB_COMPLETED:
            return
        if state in (JOB_PENDING, JOB_HELD, JOB_PROCESSING, JOB_STOPPED):
            self._cancel(conn, cups_job)
        error = self._job_error(conn, cups_job, state, attrs)
        if limit < self.timeout and error.code is ErrorCode.PRINTER_OFFLINE:
            raise DeadlinePassed(f"{error.message} (the job's deadline came)")
        raise error

    def _job_error(
        self, conn: Any, cups_job: int, state: int, attrs: dict[str, Any]
    ) -> PrinterError:
        name = _JOB_STATE_NAMES.get(state, str(state))
        message = str(attrs.get("job-printer-state-message") or "")
        reasons = _reasons(attrs, "job-state-reasons")
        try:
            printer_reasons = _reasons(self._printer_attributes(conn), "printer-state-reasons")
        except PrinterError:
            printer_reasons = []
        where = f"CUPS {self.queue} job {cups_job} {name}"
        specific = error_from_reasons(printer_reasons + reasons, f"{where}: {message}")
        if specific is not None:
            return specific
        detail = message or ", ".join(reasons + printer_reasons) or "no reason given"
        never_connected = any(
            _base_reason(r) in ("connecting-to-device", "offline") for r in printer_reasons
        ) or message.startswith(_UNREACHABLE_MESSAGES)
        if state in (JOB_PENDING, JOB_HELD) or (state == JOB_PROCESSING and never_connected):
            # CUPS never reached the printer: nothing printed, safe to send again later.
            return PrinterError(
                ErrorCode.PRINTER_OFFLINE,
                f"{where} after {self.timeout}s ({detail}); cancelled, nothing printed",
            )
        return PrinterError(
            ErrorCode.OUTCOME_UNKNOWN,
            f"{where} ({detail}); the ticket may be on paper, check the printer before reprinting",
        )

    def _cancel(self, conn: Any, cups_job: int) -> None:
        cups = import_cups()
        try:
            conn.cancelJob(cups_job, purge_job=False)
        except (cups.IPPError, cups.HTTPError):
            pass  # already finished or gone: nothing left that could print late
