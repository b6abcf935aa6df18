"""A virtual printer for demos and tests: every job's bytes land in a file of their own.

The printer's state is read from ``state.json`` in its directory, so a test (or a person) can
switch it to paper-out or cover-open while the agent runs::

    echo '{"paper": "out"}' > DIR/state.json

``{"delay_s": 2}`` makes every job take that long (a slow printer), for timing tests.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import ClassVar

from ._base import PrinterBackend, PrinterError, PrinterReading

STATE_FILE = "state.json"
JOB_SUFFIX = ".prn"


class VirtualPrinter(PrinterBackend):
    kind: ClassVar[str] = "virtual"

    def __init__(self, name: str, directory: Path) -> None:
        super().__init__(name)
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def status(self) -> PrinterReading:
        try:
            raw = json.loads((self.directory / STATE_FILE).read_text())
        except FileNotFoundError:
            return PrinterReading(online=True, paper="ok", cover_open=False)
        except (OSError, ValueError) as exc:
            return PrinterReading(online=False, detail=f"unreadable {STATE_FILE}: {exc}")
        paper = raw.get("paper", "ok")
        return PrinterReading(
            online=bool(raw.get("online", True)),
            paper=paper if paper in ("ok", "near_end", "out") else "unknown",
            cover_open=bool(raw.get("cover_open", False)),
        )

    def _delay(self) -> float:
        try:
            raw = json.loads((self.directory / STATE_FILE).read_text())
            return min(max(float(raw.get("delay_s", 0)), 0.0), 60.0)
        except (OSError, ValueError, TypeError, AttributeError):
            return 0.0

    def write(self, data: bytes, job_id: str) -> None:
        blocking = self.status().blocking_error()
        if blocking is not None:
            raise blocking
        delay = self._delay()
        if delay:
            time.sleep(delay)  # runs in the agent's printer thread, like a real slow printer
        # job ids come from the protocol's safe set; write-then-rename so a reader never sees
        # half a job and a crash never leaves a file that counts as printed.
        final = self.directory / f"{job_id}{JOB_SUFFIX}"
        tmp = self.directory / f".{job_id}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, final)
        except OSError as exc:
            from protocol import ErrorCode

            raise PrinterError(ErrorCode.PRINTER_ERROR, f"virtual printer: {exc}") from exc

    def jobs(self) -> list[Path]:
        """Files of every printed job, oldest first."""
        return sorted(self.directory.glob(f"*{JOB_SUFFIX}"))
