"""A virtual printer for demos and tests: every job's bytes land in a file of their own.

The printer's state is read from ``state.json`` in its directory, so a test (or a person) can
switch it to paper-out or cover-open while the agent runs::

    echo '{"paper": "out"}' > DIR/state.json

Keys: ``online`` (bool), ``paper`` (ok / near_end / out), ``cover_open`` (bool) and ``delay_s``
(seconds each job takes, to simulate a slow printer).

Each write also appends the job id to ``journal.log``: a job printed twice leaves one ``.prn``
file (same name) but two journal lines, so exactly-once can be checked.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import ClassVar

from protocol import ErrorCode

from ._base import PrinterBackend, PrinterError, PrinterReading

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
        state = self._state()
        blocking = self._reading(state).blocking_error()
        if blocking is not None:
            raise blocking
        delay = state.get("delay_s", 0) if isinstance(state, dict) else 0
        if isinstance(delay, int | float) and delay > 0:
            time.sleep(delay)
        # job ids come from the protocol's safe set; write-then-rename so a reader never sees
        # half a job and a crash never leaves a file that counts as printed.
        final = self.directory / f"{job_id}{JOB_SUFFIX}"
        tmp = self.directory / f".{job_id}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, final)
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
