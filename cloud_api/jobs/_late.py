"""Replies that arrive after a job was reported final.

A state reported final never changes: the caller may already have acted on it (reprinted an
expired ticket, told the kitchen). A later reply from the agent is still the truth about the
paper, so it is kept: recorded in the job's timeline as a ``late_reply`` event (the state column
of the event is the final state it left unchanged) and stored as the job's ``late_result``. When
the two disagree about paper — the job was reported ``expired``/``failed``/``cancelled`` and the
agent reports it started printing or printed, or it was reported ``printed`` and the agent
reports a failure — the job is ``disputed``: a person should look at the printer. A late result
for ``outcome_unknown`` resolves the unknown (the agent's ledger knows) and is no dispute.

Repeats of what the state already says (a resend answered from the agent's ledger) and late
``accepted``/``waiting`` (they say nothing about paper) are not recorded.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from protocol import Done, ErrorCode, ErrorInfo, Failed, Printing, PrintResult, Reply

from ..store import JobState

S = JobState

#: The state a final ``failed`` reply means, by its error code (default: failed).
FAILED_STATE: Final = {
    ErrorCode.EXPIRED: S.EXPIRED,
    ErrorCode.CANCELLED: S.CANCELLED,
    ErrorCode.OUTCOME_UNKNOWN: S.OUTCOME_UNKNOWN,
}
_NO_PAPER: Final = frozenset({S.FAILED, S.EXPIRED, S.CANCELLED})


class LateResult(msgspec.Struct, kw_only=True, frozen=True):
    """The newest reply that came after the job was final."""

    #: what the agent reports: ``printing`` (it started writing to the printer), or the final
    #: state its reply means (``printed``, ``failed``, ``expired``, ``cancelled``,
    #: ``outcome_unknown``)
    reported: Literal["printing", "printed", "failed", "expired", "cancelled", "outcome_unknown"]
    #: the job's state when the reply came (unchanged)
    state: JobState
    #: agent clock, when the agent reached that stage
    at: float
    #: cloud clock, when the API received it
    received_at: float
    #: True when paper and the reported state may disagree
    disputed: bool
    result: PrintResult | None = None
    error: ErrorInfo | None = None


def late_result(state: JobState, reply: Reply, received_at: float) -> LateResult | None:
    """What to record for ``reply`` to a job final in ``state``; None: nothing to record."""
    match reply:
        case Printing():
            if state is S.PRINTED:
                return None
            return LateResult(
                reported="printing",
                state=state,
                at=reply.at,
                received_at=received_at,
                disputed=state in _NO_PAPER,
            )
        case Done(result=result):
            if state is S.PRINTED:
                return None
            return LateResult(
                reported="printed",
                state=state,
                at=reply.at,
                received_at=received_at,
                disputed=state in _NO_PAPER,
                result=result,
            )
        case Failed(error=error):
            means = FAILED_STATE.get(error.code, S.FAILED)
            if means is state:
                return None
            paper_may_exist = means is S.OUTCOME_UNKNOWN
            return LateResult(
                reported=means.value,  # type: ignore[arg-type]
                state=state,
                at=reply.at,
                received_at=received_at,
                disputed=(state is S.PRINTED) or (paper_may_exist and state in _NO_PAPER),
                error=error,
            )
    return None


def late_cause(late: LateResult) -> str:
    """The timeline's words for a late reply."""
    if late.reported == "printing":
        return f"the agent reports it started printing after the job was reported {late.state}"
    what: str = late.reported
    if late.error is not None and late.reported == "failed":
        what = f"failed ({late.error.code}: {late.error.message})"
    return f"the agent reports {what} after the job was reported {late.state}"


_decode = msgspec.json.Decoder(LateResult)


def decode_late(data: bytes | None) -> LateResult | None:
    return _decode.decode(data) if data else None
