"""HTTP routes for printers (thin: the service holds the logic)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post

from .._auth import check_branch, principal_of
from ._service import PrinterService, TestPrintOutcome


class PrintersController(Controller):
    path = "/v1/branches/{branch_id:str}/printers"
    tags = ["printers"]

    @post("/{printer_id:str}/test", status_code=200, summary="Print a test page and wait for it")
    async def test_print(
        self,
        request: Request[Any, Any, Any],
        branch_id: str,
        printer_id: str,
        printer_service: PrinterService,
        force: bool = False,
    ) -> TestPrintOutcome:
        """Send a test page to one printer and answer with the agent's result.

        Errors: 404 ``PRINTER_NOT_FOUND``, 503 ``AGENT_OFFLINE`` (at once), 504
        ``AGENT_UNREACHABLE`` (no ``accepted`` in time) or ``PRINT_TIMEOUT`` (accepted, no result),
        422 for the printer's own failure (``PAPER_OUT``, ``COVER_OPEN``, ``PRINTER_OFFLINE``, ...).
        """
        check_branch(principal_of(request), branch_id)
        return await printer_service.test_print(branch_id, printer_id, force=force)
