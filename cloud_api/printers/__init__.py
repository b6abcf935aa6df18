"""Printers: test prints and listings."""

from ._controller import PrintersController
from ._service import PrinterService, TestPrintOutcome

__all__ = ["PrinterService", "PrintersController", "TestPrintOutcome"]
