"""Printer backends behind one small interface.

Each backend lives in its own module; optional dependencies (pycups, pywin32, pyusb) are imported
lazily so a missing extra only matters to the printer that needs it.
"""

from ._base import PrinterBackend, PrinterError, PrinterReading
from ._config import PrinterConfig, VirtualPrinterConfig, open_backend
from ._virtual import VirtualPrinter

__all__ = [
    "PrinterBackend",
    "PrinterConfig",
    "PrinterError",
    "PrinterReading",
    "VirtualPrinter",
    "VirtualPrinterConfig",
    "open_backend",
]
