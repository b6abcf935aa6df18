"""Store records and the SQL both backends share.

Exception tree::

    StoreError
    └── IdempotencyConflict   the key was used with a different request body
"""

from __future__ import annotations

import abc
import enum
import functools
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

import msgspec


class JobState(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    ACCEPTED = "accepted"
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
    """One transition of a job's timeline."""

    state: JobState
    at: float
    cause: str = ""


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


_COLUMNS: Final = (
    "id, branch_id, printer_id, agent_id, kind, state, params, copies, created_at, updated_at, "
    "deadline, sent_by, result, error, idempotency_scope, idempotency_key, request_hash"
)
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
        request_hash TEXT
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
        cause TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS job_events_job ON job_events (job_id, seq)",
]

#: How long an idempotency key holds.
IDEMPOTENCY_WINDOW_S: Final = 24 * 3600


_STATES: Final = {state.value: state for state in JobState}


def row_to_job(row: Sequence[Any]) -> JobRecord:
    data = dict(zip(_FIELDS, row, strict=True))
    for key in ("params", "result", "error"):
        value = data[key]
        if value is not None and type(value) is not bytes:
            data[key] = bytes(value)
    data["state"] = _STATES[data["state"]]
    return JobRecord(**data)


def _events(rows: Sequence[Sequence[Any]]) -> list[JobEvent]:
    return [JobEvent(state=_STATES[r[0]], at=r[1], cause=r[2]) for r in rows]


def job_values(job: JobRecord) -> list[Any]:
    return list(msgspec.structs.astuple(job))  # the struct's fields are _FIELDS, in order


_INSERT_JOB: Final = f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' for _ in _FIELDS)})"


@functools.lru_cache(maxsize=256)
def _update_sql(
    sources: int, fields: tuple[str, ...], in_branch: bool, from_agent: bool = False
) -> str:
    """The conditional update of a transition: ``sources`` states allowed, ``fields`` set."""
    sets = ", ".join(["state = ?", "updated_at = ?", *(f"{k} = ?" for k in fields)])
    where = "id = ? AND branch_id = ?" if in_branch else "id = ?"
    if from_agent:  # a reply: from the job's agent, and only for a job that was sent
        where += " AND agent_id = ? AND sent_by IS NOT NULL"
    marks = ", ".join("?" for _ in range(sources))
    return f"UPDATE jobs SET {sets} WHERE {where} AND state IN ({marks}) RETURNING {_COLUMNS}"


#: One SQL statement (``?`` placeholders) and its arguments.
Statement = tuple[str, Sequence[Any]]


class Step(NamedTuple):
    """One conditional transition (:meth:`Store.advance_many`)."""

    to: JobState
    allowed_from: frozenset[JobState]
    cause: str
    #: only a job of this branch changes
    in_branch: str | None = None
    #: columns set with the state
    fields: Mapping[str, Any] = {}
    #: only a job sent to this agent changes (a reply counts only from the job's own agent,
    #: and never for a job that was not sent)
    from_agent: str | None = None


class Store(abc.ABC):
    """Async job store. Every state change is a conditional update, so two API instances
    sharing one PostgreSQL never both apply the same transition."""

    #: Backend name for logs and /readyz.
    name: str = "store"

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise when the store is unreachable."""

    @abc.abstractmethod
    async def _execute(self, sql: str, args: Sequence[Any]) -> int:
        """Run one statement; return the affected row count."""

    @abc.abstractmethod
    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]: ...

    @abc.abstractmethod
    async def _write(
        self, first: Statement, then: Sequence[Statement] = (), *, only_if_rows: bool = False
    ) -> list[Sequence[Any]]:
        """One transaction: ``first`` (the rows it returns are the result), then ``then`` —
        with ``only_if_rows``, only when ``first`` returned a row. Rolls back when one fails."""

    # --- jobs ------------------------------------------------------------------------------

    async def create_job(
        self, job: JobRecord, cause: str, *, state_cause: str | None = None
    ) -> tuple[JobRecord, bool]:
        """Insert ``job`` with its first event (``queued``, ``cause``). A job created past
        ``queued`` (a job sent at once: its agent is online) gets the event of its state, with
        ``state_cause``, in the same transaction. With an idempotency key already used inside
        the window, return the existing job and False (same request hash) or raise
        :class:`IdempotencyConflict` (different hash)."""
        events = [self._event_sql(job.id, JobState.QUEUED, job.created_at, cause)]
        if job.state is not JobState.QUEUED:
            if state_cause is None:
                raise ValueError(f"a job created {job.state} needs the cause of that state")
            events.append(self._event_sql(job.id, job.state, job.updated_at, state_cause))
        if job.idempotency_key is not None:
            existing = await self._by_idempotency(job.idempotency_scope or "", job.idempotency_key)
            if existing is not None:
                if time.time() - existing.created_at < IDEMPOTENCY_WINDOW_S:
                    return self._same_or_conflict(existing, job), False
                # an expired key is free again: detach it from the old job
                await self._execute(
                    "UPDATE jobs SET idempotency_key = NULL WHERE id = ?", [existing.id]
                )
        try:
            await self._write((_INSERT_JOB, job_values(job)), events)
        except Exception as exc:
            if job.idempotency_key is None or not self._is_unique_violation(exc):
                raise
            # a concurrent request with the same key won the insert
            existing = await self._by_idempotency(job.idempotency_scope or "", job.idempotency_key)
            if existing is None:
                raise
            return self._same_or_conflict(existing, job), False
        return job, True

    @staticmethod
    def _same_or_conflict(existing: JobRecord, job: JobRecord) -> JobRecord:
        if existing.request_hash != job.request_hash:
            raise IdempotencyConflict(existing.id)
        return existing

    def _is_unique_violation(self, exc: Exception) -> bool:
        return "unique" in str(exc).lower() or "UniqueViolation" in type(exc).__name__

    async def _by_idempotency(self, scope: str, key: str) -> JobRecord | None:
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM jobs WHERE idempotency_scope = ? AND idempotency_key = ?",
            [scope, key],
        )
        return row_to_job(rows[0]) if rows else None

    @staticmethod
    def _event_sql(job_id: str, state: JobState, at: float, cause: str) -> Statement:
        return (
            "INSERT INTO job_events (job_id, state, at, cause) VALUES (?, ?, ?, ?)",
            [job_id, state.value, at, cause],
        )

    async def transition(
        self,
        job_id: str,
        to: JobState,
        allowed_from: Iterable[JobState],
        cause: str,
        *,
        at: float | None = None,
        **fields: Any,
    ) -> bool:
        """Move ``job_id`` to ``to`` if it is in one of ``allowed_from``; record the event.

        Returns False (and changes nothing) when the job was not in an allowed state."""
        return await self.advance(job_id, to, allowed_from, cause, at=at, **fields) is not None

    async def advance(
        self,
        job_id: str,
        to: JobState,
        allowed_from: Iterable[JobState],
        cause: str,
        *,
        at: float | None = None,
        in_branch: str | None = None,
        from_agent: str | None = None,
        **fields: Any,
    ) -> JobRecord | None:
        """:meth:`transition`, returning the job as the change left it (None: not changed).

        With ``in_branch``, only a job of that branch changes (a reply is applied in one
        statement, its branch checked by the same conditional update)."""
        step = Step(to, frozenset(allowed_from), cause, in_branch, fields, from_agent)
        first, then = self._step_sql(job_id, step, time.time() if at is None else at)
        rows = await self._write(first, then, only_if_rows=True)
        return row_to_job(rows[0]) if rows else None

    async def advance_many(self, job_id: str, steps: Sequence[Step]) -> list[JobRecord | None]:
        """:meth:`advance` for each of ``steps`` in order, in one store operation: each one is
        still its own conditional update with its event, and sees the ones before it. Returns
        what each step left (None: that step changed nothing)."""
        writes = [self._step_sql(job_id, step, time.time()) for step in steps]
        results, _ = await self._write_each(writes)
        return [row_to_job(rows[0]) if rows else None for rows in results]

    async def advance_many_then_timeline(
        self, job_id: str, steps: Sequence[Step]
    ) -> tuple[list[JobRecord | None], list[JobEvent]]:
        """:meth:`advance_many`, and the job's timeline as those steps left it, read in the
        same store operation (for a caller about to answer with the timeline)."""
        writes = [self._step_sql(job_id, step, time.time()) for step in steps]
        results, events = await self._write_each(writes, self._timeline_sql(job_id))
        return [row_to_job(rows[0]) if rows else None for rows in results], _events(events)

    async def _write_each(
        self, writes: Sequence[tuple[Statement, Sequence[Statement]]], read: Statement | None = None
    ) -> tuple[list[list[Sequence[Any]]], list[Sequence[Any]]]:
        """``_write(first, then, only_if_rows=True)`` for each of ``writes``, in order, then the
        rows of ``read`` (which sees those writes). This default makes one transaction of each
        write and reads after them; a backend may do it all in one operation."""
        results = [await self._write(first, then, only_if_rows=True) for first, then in writes]
        return results, (await self._fetch(*read) if read is not None else [])

    def _step_sql(self, job_id: str, step: Step, at: float) -> tuple[Statement, list[Statement]]:
        """The conditional update of one transition (returning the row) and its event."""
        sources = [s.value for s in step.allowed_from]
        fields = step.fields
        keys = [job_id] if step.in_branch is None else [job_id, step.in_branch]
        if step.from_agent is not None:
            keys.append(step.from_agent)
        sql = _update_sql(
            len(sources), tuple(fields), step.in_branch is not None, step.from_agent is not None
        )
        return (
            (sql, [step.to.value, at, *fields.values(), *keys, *sources]),
            [self._event_sql(job_id, step.to, at, step.cause)],
        )

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", [job_id])
        return row_to_job(rows[0]) if rows else None

    async def timeline(self, job_id: str) -> list[JobEvent]:
        return _events(await self._fetch(*self._timeline_sql(job_id)))

    @staticmethod
    def _timeline_sql(job_id: str) -> Statement:
        return "SELECT state, at, cause FROM job_events WHERE job_id = ? ORDER BY seq", [job_id]

    async def list_jobs(
        self,
        *,
        branches: Iterable[str] | None,
        state: JobState | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[JobRecord]:
        """Jobs newest first, optionally filtered; ``after`` is the last id of the previous page."""
        where, args = [], []
        if branches is not None:
            branch_list = list(branches)
            if not branch_list:
                return []
            where.append(f"branch_id IN ({', '.join('?' for _ in branch_list)})")
            args.extend(branch_list)
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        if after is not None:
            where.append("id < ?")
            args.append(after)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM jobs {clause} ORDER BY id DESC LIMIT ?", [*args, limit]
        )
        return [row_to_job(r) for r in rows]

    async def jobs_in_states(
        self,
        states: Iterable[JobState],
        *,
        branch_id: str | None = None,
        agent_id: str | None = None,
        limit: int = 1000,
    ) -> list[JobRecord]:
        values = [s.value for s in states]
        where = [f"state IN ({', '.join('?' for _ in values)})"]
        args: list[Any] = list(values)
        if branch_id is not None:
            where.append("branch_id = ?")
            args.append(branch_id)
        if agent_id is not None:
            where.append("agent_id = ?")
            args.append(agent_id)
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
            [*args, limit],
        )
        return [row_to_job(r) for r in rows]

    async def count_by_state(self) -> dict[str, int]:
        rows = await self._fetch("SELECT state, COUNT(*) FROM jobs GROUP BY state", [])
        return {str(r[0]): int(r[1]) for r in rows}
