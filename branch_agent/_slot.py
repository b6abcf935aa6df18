"""One printer as the job worker sees it: its backend, its queue, and the jobs held for it.

A print job whose printer cannot print (offline, out of paper, cover open) is *held*: it waits
in ``held``, in order, until the status poll brings a reading that says the printer is ready
(:attr:`PrinterSlot.reading` is set by the poller), then it is tried again. Test prints are never
held. Everything here lives on the event loop; the ledger has the durable side of it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from protocol import ErrorCode, PrinterState

from ._ledger import JobRecord
from ._printers import PrinterBackend, PrinterError, PrinterReading
from ._printers._base import WRITE_ALLOWANCE

#: The printer conditions a print job waits out instead of failing.
HOLD_CODES = frozenset({ErrorCode.PRINTER_OFFLINE, ErrorCode.PAPER_OUT, ErrorCode.COVER_OPEN})


def condition_of(reading: PrinterReading) -> ErrorCode | None:
    """What a job would wait for on a printer with this reading (None: ready)."""
    blocked = reading.blocking_error()
    return blocked.code if blocked is not None else None


def reading_for(error: PrinterError, current: PrinterReading) -> PrinterReading:
    """The reading a refusal implies, where the poller has not seen it yet."""
    match error.code:
        case ErrorCode.PAPER_OUT:
            return PrinterReading(online=True, paper="out", cover_open=current.cover_open)
        case ErrorCode.COVER_OPEN:
            return PrinterReading(online=True, paper=current.paper, cover_open=True)
    return PrinterReading(online=False, paper=current.paper, detail=error.message)


@dataclass(eq=False)
class PrinterSlot:
    """One printer: its backend, its jobs in order, and what the status reports."""

    backend: PrinterBackend
    #: Seconds a job that started before its deadline may keep writing past it.
    write_allowance: float = WRITE_ALLOWANCE
    queue: asyncio.Queue[JobRecord] = field(default_factory=asyncio.Queue)
    #: Jobs accepted and not started, by id, held ones included (a cancelled job leaves here
    #: at once).
    waiting: dict[str, JobRecord] = field(default_factory=dict)
    #: Print jobs held until the printer is ready, in order, and the condition each was last
    #: announced with.
    held: list[JobRecord] = field(default_factory=list)
    announced: dict[str, ErrorCode] = field(default_factory=dict)
    #: What the held jobs wait for (the last condition a refusal or the poller named).
    held_condition: ErrorCode | None = None
    busy: str | None = None
    last_error: PrinterError | None = None
    last_printed_at: float | None = None
    #: Set by the poller when a reading says the printer is ready again.
    releasing: bool = False
    _reading: PrinterReading = field(default_factory=PrinterReading)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def reading(self) -> PrinterReading:
        return self._reading

    @reading.setter
    def reading(self, reading: PrinterReading) -> None:
        changed = reading != self._reading
        self._reading = reading
        if changed and self.held:
            if condition_of(reading) is None:
                self.releasing = True
            self._wake.set()

    def state(self) -> PrinterState:
        return PrinterState(
            name=self.backend.name,
            kind=self.backend.kind,
            online=self.reading.online,
            paper=self.reading.paper,
            cover_open=self.reading.cover_open,
            last_error=self.last_error.info() if self.last_error else None,
            last_printed_at=self.last_printed_at,
        )

    def enqueue(self, job: JobRecord) -> None:
        if job.job_id not in self.waiting:
            self.waiting[job.job_id] = job
            self.queue.put_nowait(job)
            self._wake.set()

    def discard(self, job_id: str) -> bool:
        """Forget a job that will not start (cancelled, expired); True if it was here."""
        self.announced.pop(job_id, None)
        self.held = [job for job in self.held if job.job_id != job_id]
        if self.waiting.pop(job_id, None) is None:
            return False
        self._wake.set()
        return True

    def next_queued(self) -> JobRecord | None:
        """The next queued job still waiting to start (cancelled ones are skipped)."""
        while not self.queue.empty():
            job = self.queue.get_nowait()
            if job.job_id in self.waiting:
                return job
        return None

    async def wait(self, seconds: float | None) -> None:
        """Until something changes (a job queued or cancelled, a new reading) or ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()
