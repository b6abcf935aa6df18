"""Printers: test prints."""

from ._controller import PrintersController, TestPrintOutcome

__all__ = ["PrintersController", "TestPrintOutcome"]
