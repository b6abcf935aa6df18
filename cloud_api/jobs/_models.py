"""HTTP shapes of jobs."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from protocol import Content, Copies, ErrorInfo, PrintResult

from ..store import JobEvent, JobRecord, JobState
from ._late import LateResult, decode_late

ExpireAfter = Annotated[float, Meta(gt=0, le=86_400)]


class SubmitJob(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/jobs``: print ``content`` on one printer of one branch."""

    branch_id: str
    printer_id: str
    content: Content
    copies: Copies = 1
    #: Seconds from submission after which the job must not start printing (default 10 min:
    #: a kitchen ticket printed later than that does more harm than good).
    expire_after: ExpireAfter | None = None


class JobView(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    branch_id: str
    printer_id: str
    agent_id: str | None
    kind: str
    state: JobState
    copies: int
    created_at: float
    updated_at: float
    deadline: float
    result: PrintResult | None = None
    #: why it failed; while ``waiting_printer``, the printer's condition
    error: ErrorInfo | None = None
    #: while ``waiting_printer``: what the job waits for (the printer's condition)
    waiting_for: ErrorInfo | None = None
    #: a reply that came after the job was final (the state did not change: docs/jobs.md)
    late_result: LateResult | None = None
    #: the paper may disagree with ``state`` (see ``late_result``): check the printer
    disputed: bool = False
    #: the job this one retries under the same Idempotency-Key
    retry_of: str | None = None
    timeline: list[JobEvent] = []


class JobPage(msgspec.Struct, kw_only=True, frozen=True):
    jobs: list[JobView]
    #: Pass as ``after`` to get the next page; None on the last page.
    next_after: str | None = None


_result = msgspec.json.Decoder(PrintResult)
_error = msgspec.json.Decoder(ErrorInfo)


def job_view(job: JobRecord, timeline: list[JobEvent] | None = None) -> JobView:
    error = _error.decode(job.error) if job.error else None
    late = decode_late(job.late)
    return JobView(
        id=job.id,
        branch_id=job.branch_id,
        printer_id=job.printer_id,
        agent_id=job.agent_id,
        kind=job.kind,
        state=job.state,
        copies=job.copies,
        created_at=job.created_at,
        updated_at=job.updated_at,
        deadline=job.deadline,
        result=_result.decode(job.result) if job.result else None,
        error=error,
        waiting_for=error if job.state is JobState.WAITING_PRINTER else None,
        late_result=late,
        disputed=late is not None and late.disputed,
        retry_of=job.retry_of,
        timeline=timeline or [],
    )
