"""A backend base whose writes and status polls never overlap, and where writes come first.

The agent runs a job's write in one worker thread and polls ``status`` from another; a printer
connection (one TCP socket, one USB interface, one serial port) carries one conversation at a
time, so the two are serialized here, with three rules that keep a sick printer from costing a
job more than one bounded timeout:

* a status poll that finds the printer busy does not wait long: it answers from the last
  reading, so one slow printer never stalls the status of the others;
* a status poll is short: each of its steps waits at most ``status_timeout`` (1 s by default);
* a write never waits behind a poll: it marks itself waiting (a poll that has not begun gives
  way), and interrupts a poll in progress (:meth:`_interrupt`, e.g. a socket shutdown); the
  interrupted poll answers from the last reading.

A job's write goes through :meth:`print_job`: the subclass's ``_write`` calls :meth:`_begin`
just before its first byte (the ticket's point of no return) and :meth:`_sent` as bytes leave.
"""

from __future__ import annotations

import abc
import threading
import time

from protocol import ErrorCode

from ._base import PrinterBackend, PrinterError, PrinterReading, WriteTicket

#: How long a status poll waits for a running job before answering from the last reading.
STATUS_WAIT = 0.5
#: Seconds a status poll waits for each answer (a printer answers DLE EOT in milliseconds).
STATUS_TIMEOUT = 1.0
#: Longest a write waits to take the printer (another write holds it), deadline permitting.
TAKE_TIMEOUT = 30.0


class Preempted(Exception):
    """A status poll gave way to a write that wants the printer."""


class SerializedBackend(PrinterBackend):
    def __init__(self, name: str, status_timeout: float = STATUS_TIMEOUT) -> None:
        super().__init__(name)
        self.status_timeout = status_timeout
        self._lock = threading.Lock()
        self._flags = threading.Lock()
        self._last_reading = PrinterReading()
        self._writers_waiting = 0
        self._polling = False
        self._preempted = False
        self._ticket: WriteTicket | None = None

    # --- writes ------------------------------------------------------------------------------

    def write(self, data: bytes, job_id: str) -> None:
        self.print_job(data, WriteTicket(job_id))

    def print_job(self, data: bytes, ticket: WriteTicket) -> None:
        self._take(ticket)
        try:
            self._ticket = ticket
            self._write(data, ticket.job_id)
            if not ticket.started:  # a subclass that never said where its first byte is
                raise AssertionError(f"{type(self).__name__}._write never called _begin()")
        finally:
            self._ticket = None
            self._lock.release()

    def _take(self, ticket: WriteTicket) -> None:
        """Take the printer for a write: a poll in the way gives way at once."""
        with self._flags:
            self._writers_waiting += 1
            if self._polling:
                self._preempted = True
                self._interrupt()
        try:
            give_up = time.monotonic() + TAKE_TIMEOUT
            while not self._lock.acquire(timeout=ticket.remaining(0.05)):
                if time.monotonic() > give_up:
                    raise PrinterError(
                        ErrorCode.PRINTER_OFFLINE,
                        f"{self.name}: printer busy for {TAKE_TIMEOUT:.0f}s; nothing was sent",
                    )
        finally:
            with self._flags:
                self._writers_waiting -= 1

    def _begin(self) -> None:
        """Called by ``_write`` just before the first job byte: the point of no return."""
        if self._ticket is not None and not self._ticket.started:
            self._ticket.start()

    def _sent(self, count: int) -> None:
        if self._ticket is not None:
            self._ticket.sent += count

    def _step(self, cap: float) -> float:
        """Seconds one step of the running write may take: ``cap``, bounded by the ticket (the
        deadline before the point of no return, ``write_until`` after it)."""
        return self._ticket.remaining(cap) if self._ticket is not None else cap

    @property
    def _bytes_sent(self) -> int:
        return self._ticket.sent if self._ticket is not None else 0

    # --- status ------------------------------------------------------------------------------

    def status(self) -> PrinterReading:
        if self._writers_waiting or not self._lock.acquire(timeout=STATUS_WAIT):
            return self._last_reading
        try:
            with self._flags:
                if self._writers_waiting:
                    return self._last_reading
                self._polling, self._preempted = True, False
            try:
                reading = self._status()
            except Preempted:
                return self._last_reading
            with self._flags:
                if self._preempted:
                    return self._last_reading  # cut short: what it saw is not the printer
            self._last_reading = reading
            return reading
        finally:
            with self._flags:
                self._polling = False
            self._lock.release()

    def _check_preempted(self) -> None:
        """Called between the steps of a poll: raise :class:`Preempted` when a write waits."""
        if self._polling and self._preempted:
            raise Preempted

    def _interrupt(self) -> None:
        """Cut short the poll in progress (called with the flags lock held); default: the poll
        gives way between its steps only."""

    # --- what a subclass provides ------------------------------------------------------------

    @abc.abstractmethod
    def _write(self, data: bytes, job_id: str) -> None:
        """Print; called with the lock held. Calls :meth:`_begin` before the first byte."""

    @abc.abstractmethod
    def _status(self) -> PrinterReading:
        """Read the state; called with the lock held. Never raises for a printer fault."""
