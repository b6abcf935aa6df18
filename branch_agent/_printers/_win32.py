"""Windows spooler printers fed raw bytes through python-escpos ``Win32Raw`` (pywin32).

The spooler gives no ``DLE EOT`` channel; the status comes from the spooler's own view of the
printer (``GetPrinter`` level 2), which a driver fills in when it can (paper out, door open,
offline).
"""

from __future__ import annotations

from typing import Any, ClassVar

from protocol import ErrorCode

from ._base import PrinterError, PrinterReading
from ._escpos_device import EscposDeviceBackend

# PRINTER_STATUS_* flags from winspool.h
_STATUS_PAUSED = 0x1
_STATUS_ERROR = 0x2
_STATUS_PAPER_JAM = 0x8
_STATUS_PAPER_OUT = 0x10
_STATUS_OFFLINE = 0x80
_STATUS_NOT_AVAILABLE = 0x1000
_STATUS_PAPER_PROBLEM = 0x40
_STATUS_DOOR_OPEN = 0x400000


def import_win32print() -> Any:
    """pywin32's ``win32print``, or a PrinterError that says how to get it."""
    try:
        import win32print
    except ImportError as exc:
        raise PrinterError(
            ErrorCode.PRINTER_ERROR,
            "Windows spooler printers need pywin32, on Windows only: install the `windows` "
            "extra (pip install 'printermaster[windows]')",
        ) from exc
    return win32print


def reading_from_spooler_status(status: int) -> PrinterReading:
    """Map a spooler ``Status`` bit set to a reading."""
    offline = bool(status & (_STATUS_OFFLINE | _STATUS_NOT_AVAILABLE | _STATUS_PAUSED))
    paper_out = bool(status & (_STATUS_PAPER_OUT | _STATUS_PAPER_PROBLEM))
    cover_open = bool(status & _STATUS_DOOR_OPEN)
    error = bool(status & (_STATUS_ERROR | _STATUS_PAPER_JAM))
    online = not offline and not (error and not (paper_out or cover_open))
    return PrinterReading(
        online=online,
        paper="out" if paper_out else "unknown",
        cover_open=cover_open,
        detail=f"spooler status 0x{status:x}" if status else "",
    )


class Win32Printer(EscposDeviceBackend):
    kind: ClassVar[str] = "win32"

    def __init__(self, name: str, printer_name: str = "") -> None:
        super().__init__(name, timeout=0, status_query=False)
        self.printer_name = printer_name
        import_win32print()

    @property
    def where(self) -> str:
        return f"Windows printer {self.printer_name or '(default)'}"

    def _errors(self) -> tuple[type[BaseException], ...]:
        from escpos.exceptions import Error as EscposError

        import_win32print()
        import pywintypes

        return (EscposError, pywintypes.error, RuntimeError)

    def _open(self) -> Any:
        from escpos.printer import Win32Raw

        printer = Win32Raw(self.printer_name)
        printer.open(job_name=self._job_name)
        return printer

    _job_name = "printermaster"

    def _write(self, data: bytes, job_id: str) -> None:
        blocking = self._spooler_reading().blocking_error()
        if blocking is not None:
            raise blocking
        self._job_name = f"printermaster {job_id}"
        super()._write(data, job_id)

    def _spooler_reading(self) -> PrinterReading:
        win32print = import_win32print()
        try:
            name = self.printer_name or win32print.GetDefaultPrinter()
            handle = win32print.OpenPrinter(name)
            try:
                info = win32print.GetPrinter(handle, 2)
            finally:
                win32print.ClosePrinter(handle)
        except self._errors() as exc:
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE, f"{self.where}: {type(exc).__name__}: {exc}"
            ) from exc
        return reading_from_spooler_status(int(info.get("Status", 0)))

    def _status(self) -> PrinterReading:
        try:
            return self._spooler_reading()
        except PrinterError as exc:
            return PrinterReading(online=False, detail=exc.message)
