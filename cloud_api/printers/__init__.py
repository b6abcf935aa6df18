"""Printers: test prints, and agents' printer configurations managed from the cloud."""

from ..jobs._answers import TestPrintOutcome
from ._config_controller import AgentPrintersController
from ._config_service import AgentPrintersView, PrinterConfigService
from ._controller import PrintersController

__all__ = [
    "AgentPrintersController",
    "AgentPrintersView",
    "PrinterConfigService",
    "PrintersController",
    "TestPrintOutcome",
]
