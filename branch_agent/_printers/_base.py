"""The interface every printer backend implements.

Backends are synchronous (python-escpos, pycups and the Windows spooler all block); the agent
runs them in a worker thread, one job at a time per printer.
"""

from __future__ import annotations

import abc
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

    def status(self) -> PrinterReading:
        """The printer's state; backends that cannot ask the printer return ``unknown`` paper."""
        return PrinterReading()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection; the default holds none."""
