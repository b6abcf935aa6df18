"""Store records, the schema and its migrations, and the row <-> record mapping.

Exception tree::

    StoreError
    └── IdempotencyConflict   the key was used with a different request body
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Final, Literal

import msgspec


class JobState(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    ACCEPTED = "accepted"
    #: the agent holds the job until its printer is ready (paper, cover, offline)
    WAITING_PRINTER = "waiting_printer"
    PRINTING = "printing"
    PRINTED = "printed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    OUTCOME_UNKNOWN = "outcome_unknown"


FINAL_STATES: Final = frozenset(
    {
        JobState.PRINTED,
        JobState.FAILED,
        JobState.EXPIRED,
        JobState.CANCELLED,
        JobState.OUTCOME_UNKNOWN,
    }
)


class StoreError(Exception):
    """Root of the store's errors."""


class IdempotencyConflict(StoreError):
    """An idempotency key was reused with a different request."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"idempotency key already used for job {job_id} with a different body")
        self.job_id = job_id


class JobEvent(msgspec.Struct, kw_only=True, frozen=True):
    """One entry of a job's timeline: a transition to ``state``, or (``kind`` ``late_reply``)
    a reply that came after the job was final, recorded with the state it left unchanged."""

    state: JobState
    at: float
    cause: str = ""
    kind: Literal["transition", "late_reply"] = "transition"


class JobRecord(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    branch_id: str
    printer_id: str
    agent_id: str | None
    #: ``test`` (a test page) or ``print`` (content)
    kind: str
    state: JobState
    #: the request params as sent to the agent (JSON)
    params: bytes
    copies: int
    created_at: float
    updated_at: float
    #: epoch seconds (cloud clock) after which the job must not start printing
    deadline: float
    #: API instance that sent the request (its reply topic gets the answers)
    sent_by: str | None = None
    result: bytes | None = None
    error: bytes | None = None
    idempotency_scope: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    #: the newest reply that came after the job was final (JSON, see cloud_api.jobs._late)
    late: bytes | None = None
    #: the job this one retries under the same idempotency key
    retry_of: str | None = None


_COLUMNS: Final = (
    "id, branch_id, printer_id, agent_id, kind, state, params, copies, created_at, updated_at, "
    "deadline, sent_by, result, error, idempotency_scope, idempotency_key, request_hash, "
    "late, retry_of"
)
#: The jobs table's columns in JobRecord's order, for queries outside the store that read jobs.
JOB_COLUMNS: Final = _COLUMNS
_FIELDS: Final = [c.strip() for c in _COLUMNS.split(",")]
if JobRecord.__struct_fields__ != tuple(_FIELDS):  # job_values() and row_to_job() rely on it
    raise RuntimeError("JobRecord's fields and the jobs table's columns differ")

SCHEMA: Final = [
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        branch_id TEXT NOT NULL,
        printer_id TEXT NOT NULL,
        agent_id TEXT,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        params {blob} NOT NULL,
        copies INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        deadline DOUBLE PRECISION NOT NULL,
        sent_by TEXT,
        result {blob},
        error {blob},
        idempotency_scope TEXT,
        idempotency_key TEXT,
        request_hash TEXT,
        late {blob},
        retry_of TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_branch_state ON jobs (branch_id, state, id)",
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, deadline)",
    """CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency
        ON jobs (idempotency_scope, idempotency_key)""",
    """CREATE TABLE IF NOT EXISTS job_events (
        job_id TEXT NOT NULL,
        seq {serial},
        state TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        cause TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'transition'
    )""",
    "CREATE INDEX IF NOT EXISTS job_events_job ON job_events (job_id, seq)",
]

#: Columns added since the first schema: (table, column, type), added to an older database
#: when it is opened (``{blob}`` as in :data:`SCHEMA`).
MIGRATIONS: Final = [
    ("jobs", "late", "{blob}"),
    ("jobs", "retry_of", "TEXT"),
    ("job_events", "kind", "TEXT NOT NULL DEFAULT 'transition'"),
]

#: How long an idempotency key holds.
IDEMPOTENCY_WINDOW_S: Final = 24 * 3600


_STATES: Final = {state.value: state for state in JobState}


def row_to_job(row: Sequence[Any]) -> JobRecord:
    data = dict(zip(_FIELDS, row, strict=True))
    for key in ("params", "result", "error", "late"):
        value = data[key]
        if value is not None and type(value) is not bytes:
            data[key] = bytes(value)
    data["state"] = _STATES[data["state"]]
    return JobRecord(**data)


def events_of(rows: Sequence[Sequence[Any]]) -> list[JobEvent]:
    return [JobEvent(state=_STATES[r[0]], at=r[1], cause=r[2], kind=r[3]) for r in rows]


def job_values(job: JobRecord) -> list[Any]:
    return list(msgspec.structs.astuple(job))  # the struct's fields are _FIELDS, in order
