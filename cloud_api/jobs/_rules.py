"""The rules of the job lifecycle that need no I/O: where each reply may move a job, which
ended jobs may be tried again under their Idempotency-Key, the canonical form of a request,
and when the API refuses a test print before sending it."""

from __future__ import annotations

from typing import Final

import msgspec

from protocol import (
    Accepted,
    Done,
    ErrorCode,
    ErrorInfo,
    Failed,
    Printing,
    Reply,
    Waiting,
    blocking_condition,
    encode,
)

from .._errors import ApiError
from .._registry import AgentRecord
from ..store import JobRecord, JobState, Step
from ._late import FAILED_STATE, decode_late
from ._models import SubmitJob

S = JobState

# Where each reply may move a job. Never from a final state (final means final: a late reply
# is recorded as an event, see _late.py), and never a job that was never sent: ``queued`` is a
# source only for a job sent once and put back (its publish failed, yet the broker may have
# had it), which the store checks (``sent_only``).
_ACCEPTED_FROM: Final = frozenset({S.SENT, S.QUEUED})
_WAITING_FROM: Final = frozenset({S.SENT, S.QUEUED, S.ACCEPTED, S.WAITING_PRINTER})
_PRINTING_FROM: Final = _WAITING_FROM
_FINAL_FROM: Final = _WAITING_FROM | {S.PRINTING}


def reply_step(branch_id: str, reply: Reply) -> Step:
    """The transition a reply from ``branch_id`` asks for."""
    match reply:
        case Accepted():
            return Step(S.ACCEPTED, _ACCEPTED_FROM, "accepted by the agent", branch_id, {}, True)
        case Waiting(error=error):
            # the printer's condition is the job's ``error`` while it waits
            cause = f"waiting for the printer: {error.code}: {error.message}"
            condition = {"error": encode(error)}
            return Step(S.WAITING_PRINTER, _WAITING_FROM, cause, branch_id, condition, True)
        case Printing():
            cause = "the agent started printing"
            return Step(S.PRINTING, _PRINTING_FROM, cause, branch_id, {"error": None}, True)
        case Done(result=result):
            cause = (
                "printed (answered from the agent's ledger)"
                if result and result.replayed
                else "printed"
            )
            fields: dict[str, bytes | None] = {
                "result": encode(result) if result else None,
                "error": None,
            }
            return Step(S.PRINTED, _FINAL_FROM, cause, branch_id, fields, True)
        case Failed(error=error):
            state = FAILED_STATE.get(error.code, S.FAILED)
            cause = f"{error.code}: {error.message}"
            return Step(state, _FINAL_FROM, cause, branch_id, {"error": encode(error)}, True)
    raise AssertionError(f"unknown reply {reply!r}")  # pragma: no cover - Reply is closed


#: printer conditions: a job that failed on one of them may be tried again
_PRINTER_CONDITIONS: Final = frozenset(
    {ErrorCode.PAPER_OUT, ErrorCode.COVER_OPEN, ErrorCode.PRINTER_OFFLINE}
)
_error = msgspec.json.Decoder(ErrorInfo)


def may_retry(job: JobRecord) -> bool:
    """Whether a job may be tried again under its Idempotency-Key (a new job, ``retry_of`` the
    old one): it ended without paper, in a way that sending it again may fix — ``failed`` with
    a retryable error or a printer condition (paper out, cover open, printer offline),
    ``expired``, or a test print ``cancelled`` (by the API because the agent did not accept in
    time, or by a caller). Never a job printed, ``outcome_unknown``, a print job cancelled by a
    caller, or one with a late report of printing."""
    if job.state not in {S.FAILED, S.EXPIRED, S.CANCELLED}:
        return False
    late = decode_late(job.late)
    if late is not None and late.reported in {"printing", "printed", "outcome_unknown"}:
        return False
    if job.state is S.EXPIRED or (job.kind == "test" and job.state is S.CANCELLED):
        return True  # a cancelled test print: never printed, and another page does no harm
    error = _error.decode(job.error) if job.error else None
    return error is not None and (error.retryable or error.code in _PRINTER_CONDITIONS)


def canonical(request: SubmitJob) -> bytes:
    """The request as decoded, encoded with sorted keys and every default: what an
    Idempotency-Key is matched against."""
    return msgspec.json.encode(request, order="sorted")


def refuse_blocked_printer(agent: AgentRecord, printer_id: str) -> None:
    state = agent.printer(printer_id)
    if state is None:
        return
    blocked = blocking_condition(
        online=state.online, cover_open=state.cover_open, paper=state.paper
    )
    if blocked is not None:
        code, text = blocked
        raise ApiError(code, f"{printer_id}: {text} (pass force=true to try anyway)")
