"""The interface every printer backend implements.

Backends are synchronous (python-escpos, pycups and the Windows spooler all block); the agent
runs them in a worker thread, one job at a time per printer.

A job reaches a backend through :meth:`PrinterBackend.print_job` with a :class:`WriteTicket`: the
backend takes the printer, checks it, calls ``ticket.start()`` (the point of no return, which
refuses a job past its deadline) just before the first byte, and counts the bytes it hands to
the transport in ``ticket.sent``. Whoever reads the outcome then knows what is true: an error
before ``start`` or before the first byte means nothing was printed; an error after some bytes
means the ticket may be on paper (``OUTCOME_UNKNOWN``).
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from protocol import ErrorCode, ErrorInfo, blocking_condition, error_info

Paper = Literal["ok", "near_end", "out", "unknown"]


class PrinterError(Exception):
    """A printer refused or failed a job; ``code`` is the typed reason sent to the cloud."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def info(self) -> ErrorInfo:
        return error_info(self.code, self.message)


@dataclass(frozen=True)
class PrinterReading:
    """What a printer says about itself right now."""

    online: bool = True
    paper: Paper = "unknown"
    cover_open: bool | None = None
    detail: str = ""

    def blocking_error(self) -> PrinterError | None:
        """The error a job would hit now, if any (checked before printing)."""
        blocked = blocking_condition(
            online=self.online, cover_open=self.cover_open, paper=self.paper
        )
        if blocked is None:
            return None
        code, text = blocked
        return PrinterError(
            code, self.detail if code is ErrorCode.PRINTER_OFFLINE and self.detail else text
        )


class DeadlinePassed(PrinterError):
    """The job's deadline came while the backend was waiting for (or writing to) the printer."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.EXPIRED, message)


class JobTaken(Exception):
    """``ticket.start()`` found the job no longer startable (cancelled, or ended elsewhere):
    nothing was sent, and the job's outcome is someone else's to report."""


class WriteTicket:
    """One job on its way to a printer: its deadline, its point of no return, its bytes sent.

    ``deadline`` is epoch seconds in the agent's clock (None: none). ``start`` is called by the
    backend, on its thread, with the printer taken and checked, just before the first byte; it
    raises :class:`DeadlinePassed` or :class:`JobTaken` when the job must not start.
    """

    def __init__(
        self,
        job_id: str,
        deadline: float | None = None,
        start: Callable[[], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.deadline = deadline
        self._start = start
        self.started = False
        #: Bytes handed to the transport (a socket, a device, a spooler); 0: none left us.
        self.sent = 0
        #: Set by the agent when the deadline came and the write must stop.
        self.stopped = threading.Event()

    def remaining(self, cap: float) -> float:
        """Seconds left for one step: ``cap``, or less when the deadline is nearer.

        Raises :class:`DeadlinePassed` when there is no time left (or the write was stopped).
        """
        if self.stopped.is_set():
            raise DeadlinePassed("the job's deadline passed while it was being written")
        if self.deadline is None:
            return cap
        left = self.deadline - time.time()
        if left <= 0:
            raise DeadlinePassed("the job's deadline passed before the printer took it")
        return min(cap, left)

    def start(self) -> None:
        """The point of no return: call once, just before the first byte."""
        self.remaining(1.0)  # never start after the deadline
        if self._start is not None:
            self._start()
        self.started = True
        self.remaining(1.0)  # the commit took time: still before the deadline?


class PrinterBackend(abc.ABC):
    """One printer. ``write`` sends a whole job's ESC/POS bytes; ``status`` reads its state."""

    kind: ClassVar[str]
    #: ``write`` may block (a device, a socket, a spooler): the agent runs it on a worker
    #: thread. A backend that never blocks (in memory) says False and is called on the loop.
    blocking: ClassVar[bool] = True

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    def write(self, data: bytes, job_id: str) -> None:
        """Send ``data`` to the printer; raise :class:`PrinterError` when it cannot print."""

    def print_job(self, data: bytes, ticket: WriteTicket) -> None:
        """Print one job under ``ticket`` (see the module docstring).

        The default suits a backend that cannot tell how far a write got: it starts the ticket
        and calls :meth:`write`, counting the bytes as sent only when it returns.
        """
        ticket.start()
        self.write(data, ticket.job_id)
        ticket.sent = len(data)

    def abort(self) -> None:  # noqa: B027 - optional hook
        """Stop a write running on another thread (its deadline came); the default cannot."""

    def status(self) -> PrinterReading:
        """The printer's state; backends that cannot ask the printer return ``unknown`` paper."""
        return PrinterReading()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection; the default holds none."""
