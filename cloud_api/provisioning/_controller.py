"""HTTP routes for provisioning (admin token only; thin: the service holds the logic)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, post

from agent_config import PrinterConfig
from protocol import ErrorCode, is_valid_id

from .._auth import check_branch, principal_of, require_admin
from .._errors import ApiError
from ._render import AgentPlatform, Transport
from ._service import DebugLogin, ProvisioningService

TOML = "application/toml"


class ProvisionAgent(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    agent_id: Annotated[str, msgspec.Meta(max_length=64)]
    printers: Annotated[list[PrinterConfig], msgspec.Meta(max_length=64)] = []
    #: Which broker listener the agent uses: ``tcp`` (the configured default), ``tls`` or
    #: ``websockets`` (WebSockets+TLS, for networks that pass only 443).
    transport: Transport | None = None
    #: Where the agent runs (its data directory differs); default: ``windows`` when a printer
    #: is a ``win32`` spooler printer, else ``linux``.
    platform: AgentPlatform | None = None


class RotateCredentials(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: The printers table to put into the new config (the API does not keep it).
    printers: Annotated[list[PrinterConfig], msgspec.Meta(max_length=64)] = []
    platform: AgentPlatform | None = None


class DebugAccess(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(max_length=64)] = "debug"


def _admin_on_branch(request: Request[Any, Any, Any], branch_id: str) -> None:
    principal = principal_of(request)
    check_branch(principal, branch_id)  # 404 first: a key never learns other branches exist
    require_admin(principal)
    if not is_valid_id(branch_id):
        raise ApiError(ErrorCode.NOT_FOUND, f"branch {branch_id[:64]!r} not found")


def _id(value: str, what: str) -> str:
    if not is_valid_id(value):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"invalid {what} {value[:64]!r}: 1-64 of A-Z a-z 0-9 _ . - starting alphanumeric",
        )
    return value


class ProvisioningController(Controller):
    path = "/v1/branches/{branch_id:str}"
    tags = ["provisioning"]

    @post("/agents", status_code=201, summary="Provision an agent; answers its config (TOML)")
    async def add_agent(
        self,
        request: Request[Any, Any, Any],
        branch_id: str,
        data: ProvisionAgent,
        provisioning_service: ProvisioningService,
    ) -> Response[str]:
        """Creates the agent's broker login and ACL role and answers its one-time configuration:
        save it and run ``printermaster agent run --config FILE``. The password is not kept
        anywhere else. 409 ``CONFLICT`` when the agent exists."""
        _admin_on_branch(request, branch_id)
        agent_id = _id(data.agent_id, "agent_id")
        text = await provisioning_service.add_agent(
            branch_id, agent_id, data.printers, data.transport, data.platform
        )
        return Response(text, media_type=TOML, status_code=201)

    @post(
        "/agents/{agent_id:str}/rotate-credentials",
        status_code=200,
        summary="New broker password for an agent; answers the new config (TOML)",
    )
    async def rotate(
        self,
        request: Request[Any, Any, Any],
        branch_id: str,
        agent_id: str,
        provisioning_service: ProvisioningService,
        data: RotateCredentials | None = None,
    ) -> Response[str]:
        """The old password is refused from now on and the broker drops the agent's live
        session at once; the agent serves again once it runs with the new config."""
        _admin_on_branch(request, branch_id)
        printers = data.printers if data else []
        text = await provisioning_service.rotate_agent(
            branch_id, _id(agent_id, "agent_id"), printers, data.platform if data else None
        )
        return Response(text, media_type=TOML)

    @delete("/agents/{agent_id:str}", status_code=204, summary="Revoke an agent")
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        branch_id: str,
        agent_id: str,
        provisioning_service: ProvisioningService,
    ) -> None:
        """Disables the login (the broker disconnects a connected agent at once), deletes the
        login and its role, and clears its retained presence and status."""
        _admin_on_branch(request, branch_id)
        await provisioning_service.revoke_agent(branch_id, _id(agent_id, "agent_id"))

    @post("/debug-access", status_code=201, summary="A debug MQTT login for one branch")
    async def add_debug(
        self,
        request: Request[Any, Any, Any],
        branch_id: str,
        provisioning_service: ProvisioningService,
        data: DebugAccess | None = None,
    ) -> Response[DebugLogin]:
        """For ``mosquitto_pub``/``mosquitto_sub``: send requests to this branch's agents,
        read its presence, status and the replies addressed to ``debug``. Revoke it with
        ``DELETE .../debug-access/{name}`` when done."""
        _admin_on_branch(request, branch_id)
        name = _id(data.name if data else "debug", "name")
        login = await provisioning_service.add_debug(branch_id, name)
        return Response(login, status_code=201)

    @delete("/debug-access/{name:str}", status_code=204, summary="Revoke a debug login")
    async def revoke_debug(
        self,
        request: Request[Any, Any, Any],
        branch_id: str,
        name: str,
        provisioning_service: ProvisioningService,
    ) -> None:
        _admin_on_branch(request, branch_id)
        await provisioning_service.revoke_debug(branch_id, _id(name, "name"))
