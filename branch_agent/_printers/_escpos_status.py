"""ESC/POS real-time status (``DLE EOT n``): requests, answer parsing, and the reading they make.

No I/O here: a backend passes :func:`read_status` an ``exchange`` function that sends one request
and returns the printer's one-byte answer, so the same logic serves TCP, USB, serial and device
nodes, and the parsing is unit-tested without a printer.

Every answer byte has bits 1 and 4 set and bits 0 and 7 clear (mask ``0x93`` equals ``0x12``);
a byte without that pattern is not a status answer (a printer that ignores ``DLE EOT``, or stray
data from a previous exchange), and is rejected rather than guessed at.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from protocol import ErrorCode

from ._base import Paper, PrinterError, PrinterReading

DLE_EOT = b"\x10\x04"
_FIXED_MASK = 0x93
_FIXED_BITS = 0x12


class StatusQuery(enum.IntEnum):
    """The ``n`` of ``DLE EOT n``."""

    PRINTER = 1
    OFFLINE_CAUSE = 2
    ERROR_CAUSE = 3
    ROLL_PAPER = 4


class StatusFormatError(ValueError):
    """A byte that cannot be a ``DLE EOT`` answer."""


def request(query: StatusQuery) -> bytes:
    """The three bytes that ask the printer for one status."""
    return DLE_EOT + bytes([query])


def is_status_byte(value: int) -> bool:
    """True when ``value`` has the fixed bits every ``DLE EOT`` answer carries."""
    return 0 <= value <= 0xFF and value & _FIXED_MASK == _FIXED_BITS


def _check(value: int, query: StatusQuery) -> None:
    if not is_status_byte(value):
        raise StatusFormatError(f"0x{value:02x} is not an answer to DLE EOT {int(query)}")


@dataclass(frozen=True)
class PrinterStatus:
    """``DLE EOT 1``."""

    offline: bool
    drawer_pin3_high: bool
    waiting_online_recovery: bool
    feed_button_pressed: bool

    @classmethod
    def parse(cls, value: int) -> PrinterStatus:
        _check(value, StatusQuery.PRINTER)
        return cls(
            offline=bool(value & 0x08),
            drawer_pin3_high=bool(value & 0x04),
            waiting_online_recovery=bool(value & 0x20),
            feed_button_pressed=bool(value & 0x40),
        )


@dataclass(frozen=True)
class OfflineCause:
    """``DLE EOT 2``."""

    cover_open: bool
    feeding_by_button: bool
    stopped_paper_end: bool
    error: bool

    @classmethod
    def parse(cls, value: int) -> OfflineCause:
        _check(value, StatusQuery.OFFLINE_CAUSE)
        return cls(
            cover_open=bool(value & 0x04),
            feeding_by_button=bool(value & 0x08),
            stopped_paper_end=bool(value & 0x20),
            error=bool(value & 0x40),
        )


@dataclass(frozen=True)
class ErrorCause:
    """``DLE EOT 3``."""

    recoverable: bool
    autocutter: bool
    unrecoverable: bool
    auto_recoverable: bool

    @classmethod
    def parse(cls, value: int) -> ErrorCause:
        _check(value, StatusQuery.ERROR_CAUSE)
        return cls(
            recoverable=bool(value & 0x04),
            autocutter=bool(value & 0x08),
            unrecoverable=bool(value & 0x20),
            auto_recoverable=bool(value & 0x40),
        )

    def describe(self) -> str:
        causes = [
            ("mechanical error", self.recoverable),
            ("autocutter error", self.autocutter),
            ("unrecoverable error", self.unrecoverable),
            ("auto-recoverable error (e.g. head overheat)", self.auto_recoverable),
        ]
        return ", ".join(text for text, on in causes if on)


@dataclass(frozen=True)
class RollPaper:
    """``DLE EOT 4``: near-end is bits 2-3, paper end bits 5-6 (either bit counts)."""

    near_end: bool
    out: bool

    @classmethod
    def parse(cls, value: int) -> RollPaper:
        _check(value, StatusQuery.ROLL_PAPER)
        return cls(near_end=bool(value & 0x0C), out=bool(value & 0x60))


@dataclass(frozen=True)
class StatusReport:
    """All four answers, and the :class:`PrinterReading` they amount to."""

    printer: PrinterStatus
    offline_cause: OfflineCause
    error_cause: ErrorCause
    roll_paper: RollPaper

    def reading(self) -> PrinterReading:
        paper_out = self.roll_paper.out or self.offline_cause.stopped_paper_end
        paper: Paper = "out" if paper_out else "near_end" if self.roll_paper.near_end else "ok"
        # A printer with its cover open or out of paper reports itself offline too; those have
        # codes of their own, so ``online`` stays True and blocking_error() names the real cause.
        explained = self.offline_cause.cover_open or paper_out
        errors = self.error_cause.describe()
        online = not (self.printer.offline and not explained) and not errors
        detail = errors or ("printer reports offline" if not online else "")
        return PrinterReading(
            online=online, paper=paper, cover_open=self.offline_cause.cover_open, detail=detail
        )

    def blocking_error(self) -> PrinterError | None:
        """Like :meth:`PrinterReading.blocking_error`, but a printer error is PRINTER_ERROR."""
        reading = self.reading()
        if reading.cover_open:
            return PrinterError(ErrorCode.COVER_OPEN, "printer cover is open")
        if reading.paper == "out":
            return PrinterError(ErrorCode.PAPER_OUT, "printer is out of paper")
        errors = self.error_cause.describe()
        if errors:
            return PrinterError(ErrorCode.PRINTER_ERROR, f"printer reports {errors}")
        return reading.blocking_error()


def parse_report(answers: dict[StatusQuery, int]) -> StatusReport:
    """Build a report from one answer byte per query."""
    return StatusReport(
        printer=PrinterStatus.parse(answers[StatusQuery.PRINTER]),
        offline_cause=OfflineCause.parse(answers[StatusQuery.OFFLINE_CAUSE]),
        error_cause=ErrorCause.parse(answers[StatusQuery.ERROR_CAUSE]),
        roll_paper=RollPaper.parse(answers[StatusQuery.ROLL_PAPER]),
    )


def read_status(exchange: Callable[[bytes], int]) -> StatusReport:
    """Ask all four statuses; ``exchange(request)`` sends one request and returns the answer byte.

    ``exchange`` raises whatever its transport raises (timeouts included); a malformed answer
    raises :class:`StatusFormatError`.
    """
    return parse_report({query: exchange(request(query)) for query in StatusQuery})
