"""The interface every printer backend implements.

Backends are synchronous (python-escpos, pycups and the Windows spooler all block); the agent
runs them in a worker thread, one job at a time per printer.

A job reaches a backend through :meth:`PrinterBackend.print_job` with a :class:`WriteTicket`: the
backend takes the printer, checks it, calls ``ticket.start()`` (the point of no return, which
refuses a job past its deadline) just before the first byte, and counts the bytes it hands to
the transport in ``ticket.sent``. Whoever reads the outcome then knows what is true: an error
before ``start`` or before the first byte means nothing was printed; an error after some bytes
means the ticket may be on paper (``OUTCOME_UNKNOWN``). Every step before ``start`` is bounded
by the job's deadline (the latest start), every step after it by ``ticket.write_until`` (the
deadline plus :data:`WRITE_ALLOWANCE`).
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
    """The job's deadline came while the backend was waiting for the printer, or its write ran
    past the deadline plus the write allowance (:attr:`WriteTicket.write_until`)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.EXPIRED, message)


class JobTaken(Exception):
    """``ticket.start()`` found the job no longer startable (cancelled, or ended elsewhere):
    nothing was sent, and the job's outcome is someone else's to report."""


#: Seconds a write that started before its job's deadline may run past that deadline. The
#: deadline is the latest *start* (a test print's is only the API's ``accept_timeout``, 3 s);
#: a thermal printer takes 0.2-2 s per ticket, a long one with images on a slow link more. The
#: backends' own per-step timeouts stop a stalled printer much sooner; this is the outer bound.
WRITE_ALLOWANCE = 30.0


class WriteTicket:
    """One job on its way to a printer: its deadline, its point of no return, its bytes sent.

    ``deadline`` is epoch seconds in the agent's clock (None: none): the latest moment the job
    may *start* (pass its point of no return). Once started, the write may run until
    ``write_until`` = ``deadline`` + ``allowance``, never longer. ``start`` is called by the
    backend, on its thread, with the printer taken and checked, just before the first byte; it
    raises :class:`DeadlinePassed` or :class:`JobTaken` when the job must not start.
    """

    def __init__(
        self,
        job_id: str,
        deadline: float | None = None,
        start: Callable[[], None] | None = None,
        allowance: float = WRITE_ALLOWANCE,
    ) -> None:
        self.job_id = job_id
        self.deadline = deadline
        self.allowance = allowance
        self._start = start
        self.started = False
        #: Bytes handed to the transport (a socket, a device, a spooler); 0: none left us.
        self.sent = 0
        #: Set by the agent when the write ran out of time and must stop.
        self.stopped = threading.Event()

    @property
    def write_until(self) -> float | None:
        """The latest moment a started write may still run (None: no bound)."""
        return None if self.deadline is None else self.deadline + self.allowance

    @property
    def bound(self) -> float | None:
        """What the current step is bounded by: the deadline before the start, then
        ``write_until``."""
        return self.write_until if self.started else self.deadline

    def remaining(self, cap: float) -> float:
        """Seconds left for one step: ``cap``, or less when the bound (:attr:`bound`) is nearer.

        Raises :class:`DeadlinePassed` when there is no time left (or the write was stopped).
        """
        if self.stopped.is_set():
            raise DeadlinePassed(self.out_of_time())
        bound = self.bound
        if bound is None:
            return cap
        left = bound - time.time()
        if left <= 0:
            raise DeadlinePassed(self.out_of_time())
        return min(cap, left)

    def out_of_time(self) -> str:
        """Why the job stops for lack of time, at this point of it."""
        if not self.started:
            return "the job's deadline passed before the printer took it"
        return (
            f"the job's time to print ran out (its deadline + {self.allowance:g} s) "
            "while it was being written"
        )

    def start(self) -> None:
        """The point of no return: call once, just before the first byte."""
        self.remaining(1.0)  # never start after the deadline
        if self._start is not None:
            self._start()
        self.started = True
        # the commit took time: still before the deadline? (started: the caller reports it)
        if self.deadline is not None and time.time() > self.deadline:
            raise DeadlinePassed("the job's deadline passed while its start was recorded")


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
        """Stop a write running on another thread (its time ran out); the default cannot."""

    def status(self) -> PrinterReading:
        """The printer's state; backends that cannot ask the printer return ``unknown`` paper."""
        return PrinterReading()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection; the default holds none."""
