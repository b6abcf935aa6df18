"""A configured printer opened and asked for its status, in words; and the commands' exit codes.

Shared by ``printermaster agent printers`` (:mod:`branch_agent._cli`) and ``agent doctor``
(:mod:`branch_agent._doctor`).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_config import AgentConfig
from protocol import ErrorCode

from ._printers import (
    CupsPrinterConfig,
    FilePrinterConfig,
    NetworkPrinterConfig,
    PrinterConfig,
    PrinterError,
    PrinterReading,
    SerialPrinterConfig,
    UsbPrinterConfig,
    VirtualPrinterConfig,
    Win32PrinterConfig,
    open_backend,
)

#: Exit codes: 0 all well, 1 the check or print failed, 2 the config is unusable.
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def describe_target(config: PrinterConfig, data_dir: str) -> str:
    """Where a printer is, in the words of its kind (no secret is ever part of it)."""
    match config:
        case NetworkPrinterConfig():
            return f"{config.host}:{config.port}"
        case UsbPrinterConfig():
            return f"usb {config.vendor_id:04x}:{config.product_id:04x}"
        case SerialPrinterConfig():
            return f"{config.device} @{config.baudrate}"
        case FilePrinterConfig():
            return config.device
        case CupsPrinterConfig():
            return f"queue {config.queue}" + (f" on {config.server}" if config.server else "")
        case Win32PrinterConfig():
            return config.printer_name or "(Windows default printer)"
        case VirtualPrinterConfig():
            return config.directory or f"{data_dir}/virtual/{config.name}"
    return "?"


def describe_reading(reading: PrinterReading) -> str:
    parts = ["online" if reading.online else "OFFLINE", f"paper {reading.paper}"]
    if reading.cover_open is not None:
        parts.append("cover OPEN" if reading.cover_open else "cover closed")
    text = ", ".join(parts)
    return f"{text} ({reading.detail})" if reading.detail else text


@dataclass(frozen=True)
class PrinterCheck:
    """One configured printer, opened and asked for its status."""

    config: PrinterConfig
    target: str
    reading: PrinterReading | None
    #: Why the backend could not be opened or asked (missing extra, bad permissions).
    error: PrinterError | None

    @property
    def problem(self) -> PrinterError | None:
        """What would stop a job now, if anything."""
        if self.error is not None:
            return self.error
        return self.reading.blocking_error() if self.reading else None


def check_printer(config: AgentConfig, printer: PrinterConfig) -> PrinterCheck:
    target = describe_target(printer, config.data_dir)
    try:
        backend = open_backend(printer, config.data_path)
    except PrinterError as exc:
        return PrinterCheck(printer, target, None, exc)
    except OSError as exc:
        error = PrinterError(ErrorCode.PRINTER_ERROR, f"cannot open: {exc}")
        return PrinterCheck(printer, target, None, error)
    try:
        reading = backend.status()
    except Exception as exc:  # status() should never raise; say so if one does
        error = PrinterError(ErrorCode.PRINTER_ERROR, f"status failed: {type(exc).__name__}: {exc}")
        return PrinterCheck(printer, target, None, error)
    finally:
        backend.close()
    return PrinterCheck(printer, target, reading, None)
