"""HTTP routes: which agents and printers of a branch are online."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, Request, get

from protocol import (
    ConfigRejection,
    DiscoveredPrinter,
    ErrorCode,
    PrinterState,
    UpdateInfo,
    is_valid_id,
)

from .._auth import check_branch, principal_of
from .._errors import ApiError
from .._registry import BLOCKING, AgentRecord, Liveness, Problem, Registry, printer_problems


class AgentView(msgspec.Struct, kw_only=True, frozen=True):
    branch_id: str
    agent_id: str
    online: bool
    #: online, offline (goodbye or Last Will), expired (heartbeat missing) or unknown
    state: Liveness
    session: int
    version: str
    last_seen: float | None
    printers: list[str]
    #: Printers the agent sees but has not configured ("discovered, not configured": CUPS
    #: queues, USB printers, network printers on port 9100), to offer in the dashboard.
    discovered: list[str] = []
    #: The same, each with a printer table ready for ``PUT .../agents/{a}/printers``.
    discovered_printers: list[DiscoveredPrinter] = []
    #: Remote printer configuration in use (0: the agent's TOML), and the last one it refused.
    config_version: int = 0
    config_error: ConfigRejection | None = None
    #: Where the agent stands with signed updates (channel, state, target version).
    update: UpdateInfo = UpdateInfo()
    #: A problem: printers this agent claims that belong to another agent of the branch. The
    #: claims are ignored (jobs go to the owner); revoke the owner to move a printer.
    refused_printers: list[str] = []


class PrinterView(msgspec.Struct, kw_only=True, frozen=True):
    branch_id: str
    printer_id: str
    agent_id: str
    #: True when the agent is online and the printer reports itself ready to print.
    ready: bool
    agent_online: bool
    #: Everything worth a look, blocking or not (e.g. ``paper_near_end``, ``last_error``).
    problems: list[Problem]
    state: PrinterState
    last_seen: float | None


def agent_view(record: AgentRecord, now: float) -> AgentView:
    status = record.status
    state = record.liveness(now)
    return AgentView(
        branch_id=record.branch_id,
        agent_id=record.agent_id,
        online=state is Liveness.ONLINE,
        state=state,
        session=record.session,
        version=(
            status.version
            if status and status.version
            else (record.presence.version if record.presence else "")
        ),
        last_seen=record.last_seen or None,
        printers=[p.name for p in status.printers] if status else [],
        discovered=list(status.discovered) if status else [],
        discovered_printers=list(status.discovered_printers) if status else [],
        config_version=status.config_version if status else 0,
        config_error=status.config_error if status else None,
        update=status.update if status else UpdateInfo(),
        refused_printers=sorted(record.refused),
    )


def printer_views(record: AgentRecord, now: float) -> list[PrinterView]:
    if record.status is None:
        return []
    online = record.online(now)
    views = []
    for p in record.status.printers:
        if p.name in record.refused:
            continue  # another agent's printer: its owner's view counts
        problems = printer_problems(p, online)
        views.append(
            PrinterView(
                branch_id=record.branch_id,
                printer_id=p.name,
                agent_id=record.agent_id,
                ready=BLOCKING.isdisjoint(problems),
                agent_online=online,
                problems=problems,
                state=p,
                last_seen=record.last_seen or None,
            )
        )
    return views


def _known_branch(request: Request[Any, Any, Any], branch_id: str) -> None:
    """404 for a branch the caller may not see and for an id no branch can have."""
    check_branch(principal_of(request), branch_id)
    if not is_valid_id(branch_id):
        raise ApiError(ErrorCode.NOT_FOUND, f"branch {branch_id[:64]!r} not found")


class AgentsController(Controller):
    path = "/v1/branches/{branch_id:str}"
    tags = ["agents"]

    @get("/agents", summary="Agents of a branch with their presence")
    async def list_agents(
        self, request: Request[Any, Any, Any], branch_id: str, registry: Registry
    ) -> list[AgentView]:
        _known_branch(request, branch_id)
        now = time.monotonic()
        return [agent_view(r, now) for r in registry.agents(branch_id)]

    @get("/printers", summary="Printers of a branch with their status")
    async def list_printers(
        self, request: Request[Any, Any, Any], branch_id: str, registry: Registry
    ) -> list[PrinterView]:
        _known_branch(request, branch_id)
        now = time.monotonic()
        return [v for r in registry.agents(branch_id) for v in printer_views(r, now)]
