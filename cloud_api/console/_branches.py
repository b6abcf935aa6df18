"""``GET /v1/console/branches``: one page of branches with their agents and printers in detail,
for the console's fleet overview (the counts-only view is ``GET /v1/fleet``).

Built from the presence registry in memory: a page of 25 branches out of 1,000 costs one pass
over the visible branch ids (to filter, count and page) and a detailed view of 25 of them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get
from litestar.params import Parameter

from protocol import ErrorCode, ErrorInfo

from .._auth import check_branch, principal_of
from .._errors import ApiError
from .._registry import BLOCKING, AgentRecord, Liveness, Problem, Registry, printer_problems
from ..fleet._summary import FleetTotals, summarize_branch

Condition = Literal["ready", "warning", "down"]


class AgentLine(msgspec.Struct, kw_only=True, frozen=True):
    agent_id: str
    online: bool
    #: online, offline (goodbye or Last Will), expired (heartbeat missing) or unknown
    state: Liveness
    #: Wall-clock time (cloud clock) since when the agent is in this state, as far as known:
    #: its birth when online, its last message when not. None when never heard.
    since: float | None
    version: str = ""
    os: str = ""
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    queue_depth: int | None = None


class PrinterLine(msgspec.Struct, kw_only=True, frozen=True):
    printer_id: str
    agent_id: str
    kind: str
    #: ready (prints), warning (prints, but look), down (will not print)
    condition: Condition
    problems: list[Problem]
    paper: str
    last_error: ErrorInfo | None = None
    last_printed_at: float | None = None


class BranchDetail(msgspec.Struct, kw_only=True, frozen=True):
    branch_id: str
    healthy: bool
    agents: list[AgentLine]
    printers: list[PrinterLine]


class BranchPage(msgspec.Struct, kw_only=True, frozen=True):
    at: float
    #: Over every branch the caller may see, whatever the search and the page.
    totals: FleetTotals
    #: Branches that match the search (all of them, not only this page).
    matched: int
    branches: list[BranchDetail]
    #: Pass as ``after`` for the next page; null on the last page.
    next_after: str | None = None


def _wall(record: AgentRecord, agent_time: float) -> float | None:
    """An agent's timestamp on the cloud's clock (the offset is measured from live messages)."""
    return agent_time - record.clock_offset if agent_time else None


def agent_line(record: AgentRecord, now: float) -> AgentLine:
    state = record.liveness(now)
    status, presence = record.status, record.presence
    since: float | None
    if state is Liveness.ONLINE and presence is not None and presence.state == "online":
        since = _wall(record, presence.at)
    else:  # gone: since the last thing it said (its goodbye, or its last heartbeat)
        times = [t for t in (status.at if status else 0.0, presence.at if presence else 0.0) if t]
        since = _wall(record, max(times)) if times else (record.last_seen or None)
    return AgentLine(
        agent_id=record.agent_id,
        online=state is Liveness.ONLINE,
        state=state,
        since=since,
        version=presence.version if presence else "",
        os=status.os if status else "",
        cpu_percent=status.cpu_percent if status else None,
        rss_bytes=status.rss_bytes if status else None,
        queue_depth=status.queue_depth if status else None,
    )


def condition(problems: Sequence[Problem]) -> Condition:
    """ready (prints, nothing to report), warning (prints, but look), down (will not print)."""
    if not problems:
        return "ready"
    return "warning" if BLOCKING.isdisjoint(problems) else "down"


def printer_lines(record: AgentRecord, online: bool) -> list[PrinterLine]:
    if record.status is None:
        return []
    lines = []
    for p in record.status.printers:
        problems = printer_problems(p, online)
        lines.append(
            PrinterLine(
                printer_id=p.name,
                agent_id=record.agent_id,
                kind=p.kind,
                condition=condition(problems),
                problems=problems,
                paper=p.paper,
                last_error=p.last_error,
                last_printed_at=p.last_printed_at,
            )
        )
    return lines


def branch_detail(registry: Registry, branch_id: str, now: float) -> BranchDetail:
    records = sorted(registry.branch_agents(branch_id), key=lambda r: r.agent_id)
    agents = [agent_line(r, now) for r in records]
    printers = [
        line for r, a in zip(records, agents, strict=True) for line in printer_lines(r, a.online)
    ]
    printers.sort(key=lambda p: p.printer_id)
    healthy = all(a.online for a in agents) and all(p.condition == "ready" for p in printers)
    return BranchDetail(branch_id=branch_id, healthy=healthy, agents=agents, printers=printers)


def _matches(registry: Registry, branch_id: str, query: str) -> bool:
    """A branch matches when its id, one of its agents' or one of its printers' contains it."""
    if query in branch_id.casefold():
        return True
    for record in registry.branch_agents(branch_id):
        if query in record.agent_id.casefold():
            return True
        if record.status is not None and any(
            query in p.name.casefold() for p in record.status.printers
        ):
            return True
    return False


def branch_page(
    registry: Registry,
    *,
    may_see: Any,
    query: str = "",
    problems_only: bool = False,
    after: str | None = None,
    limit: int = 25,
) -> BranchPage:
    now = time.monotonic()
    totals = FleetTotals()
    query = query.strip().casefold()
    page: list[str] = []
    matched = 0
    more = False
    for branch_id in sorted(b for b in registry.branches() if may_see(b)):
        summary = summarize_branch(registry, branch_id, now)
        totals.add(summary)
        if problems_only and summary.healthy:
            continue
        if query and not _matches(registry, branch_id, query):
            continue
        matched += 1
        if after is not None and branch_id <= after:
            continue
        if len(page) < limit:
            page.append(branch_id)
        else:
            more = True
    return BranchPage(
        at=time.time(),
        totals=totals,
        matched=matched,
        branches=[branch_detail(registry, b, now) for b in page],
        next_after=page[-1] if more and page else None,
    )


class ConsoleBranchesController(Controller):
    path = "/v1/console/branches"
    tags = ["console"]

    @get("/", summary="One page of branches with their agents and printers, searchable")
    async def branches(
        self,
        request: Request[Any, Any, Any],
        registry: Registry,
        q: Annotated[str, Parameter(max_length=200)] = "",
        problems_only: bool = False,
        after: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 25,
    ) -> BranchPage:
        """``q`` matches part of a branch, agent or printer id (case-insensitive);
        ``problems_only`` keeps branches with an agent offline or a printer not ready. Totals
        count every visible branch whatever the filter."""
        principal = principal_of(request)
        return branch_page(
            registry,
            may_see=principal.may_see,
            query=q,
            problems_only=problems_only,
            after=after,
            limit=limit,
        )

    @get("/{branch_id:str}", summary="One branch with its agents and printers")
    async def branch(
        self, request: Request[Any, Any, Any], branch_id: str, registry: Registry
    ) -> BranchDetail:
        check_branch(principal_of(request), branch_id)
        if not registry.branch_agents(branch_id):
            raise ApiError(ErrorCode.NOT_FOUND, f"branch {branch_id[:64]!r} not found")
        return branch_detail(registry, branch_id, time.monotonic())
