"""A virtual printer for demos and tests: every job's bytes land in a file of their own.

The printer's state is read from ``state.json`` in its directory, so a test (or a person) can
switch it to paper-out or cover-open while the agent runs::

    echo '{"paper": "out"}' > DIR/state.json

Keys: ``online`` (bool), ``paper`` (ok / near_end / out), ``cover_open`` (bool) and ``delay_s``
(seconds each job takes before its bytes land, at most 60: a slow printer, for timing tests).
The delay is part of the write (after the point of no return): a job that started before its
deadline may take it, up to the ticket's ``write_until``; a job still in its delay then is stopped
with nothing written (EXPIRED).

Every write is a file of its own (``JOB.prn``; a second print of the same job ``JOB.2.prn``) and
a line in ``journal.log`` (job ids in print order), so exactly-once can be checked on "paper".
A job's file is written when it starts printing and appears under its name when it lands: its
modification time is when printing started (however long the print took), the moment a deadline
is about.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import ClassVar

from protocol import ErrorCode

from ._base import DeadlinePassed, PrinterBackend, PrinterError, PrinterReading, WriteTicket

STATE_FILE = "state.json"
JOB_SUFFIX = ".prn"
JOURNAL_FILE = "journal.log"


class VirtualPrinter(PrinterBackend):
    kind: ClassVar[str] = "virtual"

    def __init__(self, name: str, directory: Path) -> None:
        super().__init__(name)
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def _state(self) -> dict[str, object] | OSError | ValueError:
        try:
            raw = json.loads((self.directory / STATE_FILE).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            return exc
        return raw if isinstance(raw, dict) else ValueError("not a JSON object")

    @staticmethod
    def _reading(state: dict[str, object] | OSError | ValueError) -> PrinterReading:
        if isinstance(state, Exception):
            return PrinterReading(online=False, detail=f"unreadable {STATE_FILE}: {state}")
        paper = state.get("paper", "ok")
        return PrinterReading(
            online=bool(state.get("online", True)),
            paper=paper if paper in ("ok", "near_end", "out") else "unknown",
            cover_open=bool(state.get("cover_open", False)),
        )

    def status(self) -> PrinterReading:
        return self._reading(self._state())

    def write(self, data: bytes, job_id: str) -> None:
        self.print_job(data, WriteTicket(job_id))

    def print_job(self, data: bytes, ticket: WriteTicket) -> None:
        job_id = ticket.job_id
        state = self._state()
        blocking = self._reading(state).blocking_error()
        if blocking is not None:
            raise blocking
        ticket.start()
        # job ids come from the protocol's safe set; write-then-link so a reader never sees half
        # a job, a crash never leaves a file that counts as printed, and a second print of the
        # same job is a second file (JOB.2.prn), never a silent overwrite: paper counts exactly.
        # Written as printing starts, so the file's time is the start even when the print is
        # slow or the agent is frozen mid-way (a deadline is the latest start).
        tmp = self.directory / f".{job_id}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise PrinterError(ErrorCode.PRINTER_ERROR, f"virtual printer: {exc}") from exc
        delay = state.get("delay_s", 0) if isinstance(state, dict) else 0
        if isinstance(delay, int | float) and delay > 0:
            # runs in the agent's printer thread, like a real slow printer; bounded by the
            # ticket's write_until: stopped before its bytes land, nothing is on paper
            until = time.monotonic() + min(float(delay), 60.0)
            try:
                while (left := until - time.monotonic()) > 0:
                    ticket.stopped.wait(ticket.remaining(left))
                ticket.remaining(1.0)
            except DeadlinePassed as exc:
                tmp.unlink(missing_ok=True)
                raise DeadlinePassed(
                    f"virtual printer: {exc.message} before its bytes landed; nothing was printed"
                ) from exc
        try:
            copy = 1
            while True:
                name = f"{job_id}{JOB_SUFFIX}" if copy == 1 else f"{job_id}.{copy}{JOB_SUFFIX}"
                try:
                    os.link(tmp, self.directory / name)
                    break
                except FileExistsError:
                    copy += 1
            os.unlink(tmp)
            ticket.sent = len(data)
            with open(self.directory / JOURNAL_FILE, "a") as journal:
                journal.write(f"{job_id}\n")
        except OSError as exc:
            raise PrinterError(ErrorCode.PRINTER_ERROR, f"virtual printer: {exc}") from exc

    def jobs(self) -> list[Path]:
        """Files of every printed job, oldest first."""
        return sorted(self.directory.glob(f"*{JOB_SUFFIX}"))

    def journal(self) -> list[str]:
        """Job ids in the order they were written, one entry per write (repeats included)."""
        try:
            return (self.directory / JOURNAL_FILE).read_text().split()
        except FileNotFoundError:
            return []
