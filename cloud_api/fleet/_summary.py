"""Counting, not listing: a fleet of 1,000 agents answers in a few kilobytes per hundred branches.

Every printer falls in exactly one of ``ready`` (prints, nothing to report), ``warning`` (prints,
but paper is near its end or its last job failed) and ``down`` (will not print: agent offline,
printer offline, cover open, paper out). The per-problem counters say why; a printer with two
problems counts in both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import msgspec

from .._registry import BLOCKING, Problem, Registry, printer_problems


class PrinterCounts(msgspec.Struct, kw_only=True):
    total: int = 0
    ready: int = 0
    warning: int = 0
    down: int = 0
    agent_offline: int = 0
    printer_offline: int = 0
    cover_open: int = 0
    paper_out: int = 0
    paper_near_end: int = 0
    last_error: int = 0

    def add(self, problems: list[Problem]) -> None:
        self.total += 1
        if not problems:
            self.ready += 1
        elif BLOCKING.isdisjoint(problems):
            self.warning += 1
        else:
            self.down += 1
        for problem in problems:
            setattr(self, problem.value, getattr(self, problem.value) + 1)

    def merge(self, other: PrinterCounts) -> None:
        for name in self.__struct_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class BranchSummary(msgspec.Struct, kw_only=True):
    branch_id: str
    agents_online: int = 0
    agents_offline: int = 0
    printers: PrinterCounts = msgspec.field(default_factory=PrinterCounts)
    #: Agents per software version they run ("" when not known yet): how far a rollout got.
    versions: dict[str, int] = msgspec.field(default_factory=dict)
    #: Claims to printers of another agent of the branch (ignored): a hijack attempt or a
    #: printer moved without revoking its owner. See ``refused_printers`` in the agents view.
    printer_conflicts: int = 0

    @property
    def healthy(self) -> bool:
        return (
            self.agents_offline == 0
            and self.printers.ready == self.printers.total
            and self.printer_conflicts == 0
        )


class FleetTotals(msgspec.Struct, kw_only=True):
    branches: int = 0
    branches_with_problems: int = 0
    agents_online: int = 0
    agents_offline: int = 0
    printers: PrinterCounts = msgspec.field(default_factory=PrinterCounts)
    versions: dict[str, int] = msgspec.field(default_factory=dict)

    def add(self, summary: BranchSummary) -> None:
        """Count one branch in."""
        self.branches += 1
        self.branches_with_problems += not summary.healthy
        self.agents_online += summary.agents_online
        self.agents_offline += summary.agents_offline
        self.printers.merge(summary.printers)
        for version, count in summary.versions.items():
            self.versions[version] = self.versions.get(version, 0) + count


class FleetSummary(msgspec.Struct, kw_only=True):
    #: Server wall-clock time of the snapshot.
    at: float
    #: Over every branch the caller may see, whatever the page and filter.
    totals: FleetTotals
    #: One page of branches, by branch id.
    branches: list[BranchSummary]
    #: Pass as ``after`` for the next page; null on the last page.
    next_after: str | None = None


def summarize_branch(registry: Registry, branch_id: str, now: float) -> BranchSummary:
    summary = BranchSummary(branch_id=branch_id)
    for record in registry.branch_agents(branch_id):
        online = record.online(now)
        if online:
            summary.agents_online += 1
        else:
            summary.agents_offline += 1
        version = record.status.version if record.status else ""
        summary.versions[version] = summary.versions.get(version, 0) + 1
        summary.printer_conflicts += len(record.refused)
        if record.status is not None:
            for printer in record.status.printers:
                if printer.name not in record.refused:
                    summary.printers.add(printer_problems(printer, online))
    return summary


def summarize(
    registry: Registry,
    *,
    may_see: Callable[[str], bool],
    problems_only: bool = False,
    after: str | None = None,
    limit: int = 500,
) -> FleetSummary:
    now = time.monotonic()
    totals = FleetTotals()
    page: list[BranchSummary] = []
    more = False
    branches: Iterable[str] = sorted(b for b in registry.branches() if may_see(b))
    for branch_id in branches:
        summary = summarize_branch(registry, branch_id, now)
        totals.add(summary)
        if (after is not None and branch_id <= after) or (problems_only and summary.healthy):
            continue
        if len(page) < limit:
            page.append(summary)
        else:
            more = True
    return FleetSummary(
        at=time.time(),
        totals=totals,
        branches=page,
        next_after=page[-1].branch_id if more and page else None,
    )
