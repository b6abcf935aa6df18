"""``/v1/branches/{b}/agents/{a}/printers``: an agent's printers, managed from the cloud."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, put

from .._auth import check_branch, principal_of
from ._config_service import AgentPrintersView, PrinterConfigService, PrintersBody


class AgentPrintersController(Controller):
    path = "/v1/branches/{branch_id:str}/agents/{agent_id:str}/printers"
    tags = ["printers"]

    @get("/", summary="An agent's printer configuration: wanted and applied")
    async def get_printers(
        self,
        request: Request[Any, Any, Any],
        branch_id: str,
        agent_id: str,
        printer_config_service: PrinterConfigService,
    ) -> AgentPrintersView:
        check_branch(principal_of(request), branch_id)
        return await printer_config_service.get(branch_id, agent_id)

    @put("/", summary="Set an agent's printers (applied by the agent without a restart)")
    async def put_printers(
        self,
        request: Request[Any, Any, Any],
        branch_id: str,
        agent_id: str,
        data: PrintersBody,
        printer_config_service: PrinterConfigService,
    ) -> AgentPrintersView:
        """The printer tables of the agent's TOML config (``kind``, ``name``, ...), as JSON. The
        answer comes at once, before the agent applied it: poll ``GET`` until ``applied`` (or
        ``agent_error``, a refusal by the agent with the key it found wrong)."""
        check_branch(principal_of(request), branch_id)
        return await printer_config_service.put(branch_id, agent_id, data.printers)

    @delete("/", status_code=200, summary="Hand an agent's printers back to its local config")
    async def clear_printers(
        self,
        request: Request[Any, Any, Any],
        branch_id: str,
        agent_id: str,
        printer_config_service: PrinterConfigService,
    ) -> AgentPrintersView:
        """The agent goes back to the printers of its TOML, without a restart: a new version
        like any other (``local`` true), retained for an agent that is offline now."""
        check_branch(principal_of(request), branch_id)
        return await printer_config_service.clear(branch_id, agent_id)
