"""The judge of a chaos run (:mod:`ops.chaos`): what every job ended as, against the paper.

Every check is about a promise the API makes (docs/jobs.md); :meth:`ChaosReport.problems` lists
the ones broken, and the run fails when it is not empty.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

FINAL = frozenset({"printed", "failed", "expired", "cancelled", "outcome_unknown"})

#: Seconds of slack for clocks and file times (all processes share one machine clock).
SLACK = 0.1


@dataclass
class TestPrintAnswer:
    """One HTTP answer to a test print of the retrying client."""

    index: int
    attempt: int
    status: int
    code: str | None
    retryable: bool | None
    job_id: str | None


@dataclass
class ChaosReport:
    jobs: int
    test_prints: int = 0
    states: collections.Counter[str] = field(default_factory=collections.Counter)
    still_open: dict[str, str] = field(default_factory=dict)
    #: job id -> times it reached paper, for jobs on paper more than once
    printed_twice: dict[str, int] = field(default_factory=dict)
    #: on paper, but the API says otherwise: job id -> API state
    paper_not_reported: dict[str, str] = field(default_factory=dict)
    #: the API says printed, the printer has nothing
    printed_without_paper: list[str] = field(default_factory=list)
    #: paper for a job id nobody submitted
    stray_paper: list[str] = field(default_factory=list)
    #: job id -> seconds past its deadline the print started (paper time)
    printed_late: dict[str, float] = field(default_factory=dict)
    #: job id -> seconds before its deadline it was reported expired
    expired_early: dict[str, float] = field(default_factory=dict)
    #: job id -> the final states it was reported in, in order, when more than one
    final_changed: dict[str, list[str]] = field(default_factory=dict)
    #: test prints answered 504 with ``retryable: true`` that reached paper
    paper_after_504: list[str] = field(default_factory=list)
    #: test prints answered 504 with ``retryable: false`` ("may still print") that did
    paper_after_unsure_504: list[str] = field(default_factory=list)
    #: jobs with a late result that disagrees with their state (``disputed``)
    disputed: list[str] = field(default_factory=list)
    #: prints on paper, per printer name (virtual printers together)
    paper_by_printer: dict[str, int] = field(default_factory=dict)
    #: test print answers by (status, code, retryable)
    test_answers: collections.Counter[str] = field(default_factory=collections.Counter)
    #: submissions answered neither 200/202 nor 5xx: index -> status and body
    rejected: dict[int, str] = field(default_factory=dict)
    #: test prints (by index) no API answered at all (connection errors only)
    unanswered: list[int] = field(default_factory=list)
    submit_retries: int = 0
    submit_seconds: float = 0.0
    settle_seconds: float = 0.0
    events: list[tuple[float, str]] = field(default_factory=list)
    state_dir: str = ""
    #: what the judge knows of each job that broke a promise (late, expired early, stray
    #: paper, final changed), one line each: enough to find it in the logs of a failed run
    details: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = []
        if self.rejected:
            found.append(f"{len(self.rejected)} submissions rejected")
        if self.unanswered:
            found.append(f"{len(self.unanswered)} test prints never answered")
        if self.still_open:
            found.append(f"{len(self.still_open)} jobs not final")
        if self.printed_twice:
            found.append(f"{len(self.printed_twice)} jobs printed twice")
        if self.printed_without_paper:
            found.append(f"{len(self.printed_without_paper)} jobs reported printed have no paper")
        lies = {j: s for j, s in self.paper_not_reported.items() if s != "outcome_unknown"}
        if lies:
            found.append(f"{len(lies)} jobs on paper but reported {sorted(set(lies.values()))}")
        if self.stray_paper:
            found.append(f"{len(self.stray_paper)} printed jobs nobody submitted")
        if self.printed_late:
            found.append(f"{len(self.printed_late)} jobs printed after their deadline")
        if self.expired_early:
            found.append(f"{len(self.expired_early)} jobs expired before their deadline")
        if self.final_changed:
            found.append(f"{len(self.final_changed)} jobs changed their final state")
        if self.paper_after_504:
            found.append(f"{len(self.paper_after_504)} retryable 504s followed by paper")
        return found

    def render(self) -> str:
        s = self.states
        open_states = collections.Counter(self.still_open.values())
        early = sorted(self.expired_early.values(), reverse=True)
        late = sorted(self.printed_late.values(), reverse=True)
        lines = [
            f"jobs submitted        {self.jobs} print jobs + {self.test_prints} test prints "
            f"in {self.submit_seconds:.1f} s ({self.submit_retries} retried submissions)",
            f"printed               {s['printed']}",
            f"failed                {s['failed']}",
            f"expired               {s['expired']}",
            f"outcome_unknown       {s['outcome_unknown']}",
            f"cancelled             {s['cancelled']}",
            f"still open            {len(self.still_open)} {dict(open_states) or ''}".rstrip(),
            f"printed twice         {len(self.printed_twice)}",
            f"paper, not 'printed'  {len(self.paper_not_reported)} "
            f"{dict(collections.Counter(self.paper_not_reported.values())) or ''}".rstrip(),
            f"'printed', no paper   {len(self.printed_without_paper)}",
            f"printed late          {len(self.printed_late)}"
            + (f" (up to {late[0]:.2f} s)" if late else ""),
            f"expired early         {len(self.expired_early)}"
            + (f" (up to {early[0]:.2f} s before the deadline)" if early else ""),
            f"final state changed   {len(self.final_changed)}",
            f"504 then paper        {len(self.paper_after_504)} retryable, "
            f"{len(self.paper_after_unsure_504)} not retryable (allowed: it said so)",
            f"disputed late results {len(self.disputed)}",
            "paper by printer      "
            + (", ".join(f"{k}: {v}" for k, v in self.paper_by_printer.items()) or "-"),
            "test print answers    "
            + (", ".join(f"{k}: {v}" for k, v in sorted(self.test_answers.items())) or "-"),
            f"time to settle        {self.settle_seconds:.1f} s after the last submission",
            "timeline:",
            *(f"  {at:7.2f} s  {what}" for at, what in self.events),
        ]
        if self.details:
            lines += ["details:", *(f"  {line}" for line in self.details)]
        problems = self.problems()
        lines.append("result:               " + ("; ".join(problems) if problems else "OK"))
        return "\n".join(lines)


def judge(
    report: ChaosReport,
    jobs: dict[str, dict[str, Any]],
    timelines: dict[str, list[dict[str, Any]]],
    first_final: dict[str, str],
    paper: collections.Counter[str],
    paper_at: dict[str, float],
    answers: list[TestPrintAnswer],
) -> None:
    """Fill ``report`` from the jobs as the API tells them at the end (``jobs``, with their
    ``timelines``), the final state each was first seen in, and the paper (times each job
    reached it, and when its first copy started)."""
    for job_id, job in jobs.items():
        state = str(job.get("state", "missing"))
        report.states[state] += 1
        if state not in FINAL:
            report.still_open[job_id] = state
        copies = paper[job_id]
        if copies > 1:
            report.printed_twice[job_id] = copies
        if copies and state != "printed":
            report.paper_not_reported[job_id] = state
        if state == "printed" and not copies:
            report.printed_without_paper.append(job_id)
        if job_id in paper_at and "deadline" in job:
            past = paper_at[job_id] - job["deadline"]
            if past > SLACK:
                report.printed_late[job_id] = past
        if state == "expired" and job.get("updated_at", 0) < job.get("deadline", 0) - SLACK:
            # the expiry was applied before the deadline: the agent refused it even earlier
            report.expired_early[job_id] = job["deadline"] - job["updated_at"]
        # every final state the job was reported in, in order: one, or final changed
        reported = [
            e["state"]
            for e in timelines.get(job_id, [])
            if e.get("kind", "transition") == "transition" and e["state"] in FINAL
        ]
        seen = first_final.get(job_id)
        if seen is not None and (not reported or reported[0] != seen):
            reported.insert(0, seen)
        if state in FINAL and (not reported or reported[-1] != state):
            reported.append(state)
        distinct = [x for i, x in enumerate(reported) if i == 0 or reported[i - 1] != x]
        if len(distinct) > 1:
            report.final_changed[job_id] = distinct
        if job.get("disputed"):
            report.disputed.append(job_id)
    for answer in answers:
        key = f"{answer.status} {answer.code or ''}".strip()
        if answer.retryable is not None and answer.status >= 500:
            key += " retryable" if answer.retryable else " not retryable"
        report.test_answers[key] += 1
        if answer.status == 0:
            report.unanswered.append(answer.index)
        if answer.status == 504 and answer.job_id and paper[answer.job_id]:
            if answer.retryable:
                report.paper_after_504.append(answer.job_id)
            else:
                report.paper_after_unsure_504.append(answer.job_id)
    report.stray_paper = sorted(set(paper) - set(jobs))
    for job_id in sorted({*report.printed_late, *report.expired_early, *report.final_changed}):
        report.details.append(explain(job_id, jobs[job_id], timelines.get(job_id, []), paper_at))
    report.details += [f"{job_id}: paper, not a job of this run" for job_id in report.stray_paper]


def explain(
    job_id: str,
    job: dict[str, Any],
    timeline: list[dict[str, Any]],
    paper_at: dict[str, float],
) -> str:
    """One line about a job, its times in seconds from its creation: its deadline, when its
    paper started, and each event of its timeline (state, time, cause)."""
    created = float(job.get("created_at", 0.0))

    def since(at: float) -> str:
        return f"{at - created:+.3f} s"

    parts = [
        f"{job_id}: {job.get('state')} on {job.get('printer_id')} ({job.get('agent_id')})",
        f"deadline {since(job['deadline'])}" if "deadline" in job else "no deadline",
    ]
    if job_id in paper_at:
        parts.append(f"paper {since(paper_at[job_id])}")
    parts += [f"{e.get('state')} {since(e['at'])} ({e.get('cause', '')})" for e in timeline]
    return "; ".join(parts)
