"""Printer backends behind one small interface.

Each backend lives in its own module; optional dependencies (pycups, pywin32, pyusb, pyserial)
are imported lazily so a missing extra only matters to the printer that needs it.

The printer tables of the config (``VirtualPrinterConfig`` ...) are :mod:`agent_config`'s, named
here too for the agent's modules.

Errors: every backend raises :class:`PrinterError` (with a :class:`protocol.ErrorCode`) and never
a third-party exception; ``status()`` never raises for a printer fault, it reports it.
"""

from agent_config import (
    CupsPrinterConfig,
    FilePrinterConfig,
    NetworkPrinterConfig,
    PrinterConfig,
    SerialPrinterConfig,
    UsbPrinterConfig,
    VirtualPrinterConfig,
    Win32PrinterConfig,
)

from ._base import PrinterBackend, PrinterError, PrinterReading
from ._config import open_backend
from ._cups import CupsQueue, discover_cups_queues
from ._network import NetworkPrinter
from ._virtual import VirtualPrinter

__all__ = [
    "CupsPrinterConfig",
    "CupsQueue",
    "FilePrinterConfig",
    "NetworkPrinter",
    "NetworkPrinterConfig",
    "PrinterBackend",
    "PrinterConfig",
    "PrinterError",
    "PrinterReading",
    "SerialPrinterConfig",
    "UsbPrinterConfig",
    "VirtualPrinter",
    "VirtualPrinterConfig",
    "Win32PrinterConfig",
    "discover_cups_queues",
    "open_backend",
]
