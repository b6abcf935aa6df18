"""A backend base whose ``write`` and ``status`` never overlap.

The agent runs ``write`` in one worker thread and polls ``status`` from another; a printer
connection (one TCP socket, one USB interface, one serial port) carries one conversation at a
time, so the two are serialized here. A status poll that finds a job printing does not wait for
it: it returns the last reading, so one slow printer never stalls the status of the others.
"""

from __future__ import annotations

import abc
import threading

from ._base import PrinterBackend, PrinterReading

#: How long a status poll waits for a running job before answering from the last reading.
STATUS_WAIT = 0.5


class SerializedBackend(PrinterBackend):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._lock = threading.Lock()
        self._last_reading = PrinterReading()

    def write(self, data: bytes, job_id: str) -> None:
        with self._lock:
            self._write(data, job_id)

    def status(self) -> PrinterReading:
        if not self._lock.acquire(timeout=STATUS_WAIT):
            return self._last_reading
        try:
            self._last_reading = self._status()
            return self._last_reading
        finally:
            self._lock.release()

    @abc.abstractmethod
    def _write(self, data: bytes, job_id: str) -> None:
        """Print; called with the lock held."""

    @abc.abstractmethod
    def _status(self) -> PrinterReading:
        """Read the state; called with the lock held. Never raises for a printer fault."""
