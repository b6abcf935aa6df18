"""The SQL both backends share: conditional transitions, idempotent creation, reads.
Records and the schema are in :mod:`._records`, the statements' text in :mod:`._sql`."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from ._records import (
    _COLUMNS,
    FINAL_STATES,
    IDEMPOTENCY_WINDOW_S,
    MIGRATIONS,
    SCHEMA,
    IdempotencyConflict,
    JobEvent,
    JobRecord,
    JobState,
    StoreError,
    events_of,
    job_values,
    row_to_job,
)
from ._sql import INSERT_JOB, Statement, Step, update_sql

__all__ = [
    "FINAL_STATES",
    "IDEMPOTENCY_WINDOW_S",
    "MIGRATIONS",
    "SCHEMA",
    "IdempotencyConflict",
    "JobEvent",
    "JobRecord",
    "JobState",
    "Statement",
    "Step",
    "Store",
    "StoreError",
    "job_values",
    "row_to_job",
]


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
        self,
        job: JobRecord,
        cause: str,
        *,
        state_cause: str | None = None,
        may_retry: Callable[[JobRecord], bool] | None = None,
    ) -> tuple[JobRecord, bool]:
        """Insert ``job`` with its first event (``queued``, ``cause``). A job created past
        ``queued`` (a job sent at once: its agent is online) gets the event of its state, with
        ``state_cause``, in the same transaction. With an idempotency key already used inside
        the window, return the existing job and False (same request hash) or raise
        :class:`IdempotencyConflict` (different hash) — unless ``may_retry`` says the existing
        job (same hash) ended so that it may be tried again: then the key moves to ``job``,
        created with ``retry_of`` = the old job, in one transaction."""
        events = [self._event_sql(job.id, JobState.QUEUED, job.created_at, cause)]
        if job.state is not JobState.QUEUED:
            if state_cause is None:
                raise ValueError(f"a job created {job.state} needs the cause of that state")
            events.append(self._event_sql(job.id, job.state, job.updated_at, state_cause))
        if job.idempotency_key is not None:
            existing = await self._by_idempotency(job.idempotency_scope or "", job.idempotency_key)
            if existing is not None:
                if self._answers(existing, job.request_hash, may_retry):
                    return existing, False
                # an expired key is free again, and so is the key of a job that may be
                # retried: detach it from the old job, in the transaction that inserts the new
                # one (a concurrent request detaches nothing and finds the new job instead)
                if _fresh(existing):
                    job = msgspec.structs.replace(job, retry_of=existing.id)
                detach: Statement = (
                    "UPDATE jobs SET idempotency_key = NULL WHERE id = ? AND idempotency_key = ? "
                    "RETURNING id",
                    [existing.id, job.idempotency_key],
                )
                try:
                    rows = await self._write(
                        detach, [(INSERT_JOB, job_values(job)), *events], only_if_rows=True
                    )
                except Exception as exc:
                    if not self._is_unique_violation(exc):
                        raise
                    rows = []
                if rows:
                    return job, True
                again = await self._by_idempotency(
                    job.idempotency_scope or "", job.idempotency_key or ""
                )
                if again is None:
                    raise StoreError(f"idempotency key of job {existing.id} vanished; try again")
                return self._same_or_conflict(again, job), False
        try:
            await self._write((INSERT_JOB, job_values(job)), events)
        except Exception as exc:
            if job.idempotency_key is None or not self._is_unique_violation(exc):
                raise
            # a concurrent request with the same key won the insert
            existing = await self._by_idempotency(job.idempotency_scope or "", job.idempotency_key)
            if existing is None:
                raise
            return self._same_or_conflict(existing, job), False
        return job, True

    async def job_for_key(
        self,
        scope: str,
        key: str,
        request_hash: str,
        may_retry: Callable[[JobRecord], bool] | None = None,
    ) -> JobRecord | None:
        """The job an idempotency key answers, as :meth:`create_job` would find it: the job
        created with it inside the window for the same request (:class:`IdempotencyConflict`
        for another request); None when the key is free or its job may be tried again."""
        existing = await self._by_idempotency(scope, key)
        if existing is None or not self._answers(existing, request_hash, may_retry):
            return None
        return existing

    @staticmethod
    def _answers(
        existing: JobRecord,
        request_hash: str | None,
        may_retry: Callable[[JobRecord], bool] | None,
    ) -> bool:
        """Whether ``existing`` is the answer to a request with its key and ``request_hash``."""
        if not _fresh(existing):
            return False
        if existing.request_hash != request_hash:
            raise IdempotencyConflict(existing.id)
        return may_retry is None or not may_retry(existing)

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
    def _event_sql(
        job_id: str, state: JobState, at: float, cause: str, kind: str = "transition"
    ) -> Statement:
        return (
            "INSERT INTO job_events (job_id, state, at, cause, kind) VALUES (?, ?, ?, ?, ?)",
            [job_id, state.value, at, cause, kind],
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
        sent_only: bool = False,
        **fields: Any,
    ) -> JobRecord | None:
        """:meth:`transition`, returning the job as the change left it (None: not changed).

        With ``in_branch``, only a job of that branch changes (a reply is applied in one
        statement, its branch checked by the same conditional update)."""
        step = Step(
            to,
            frozenset(allowed_from),
            cause,
            in_branch,
            fields,
            sent_only=sent_only,
            from_agent=from_agent,
        )
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
        return [row_to_job(rows[0]) if rows else None for rows in results], events_of(events)

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
        sql = update_sql(
            len(sources),
            tuple(fields),
            step.in_branch is not None,
            step.sent_only,
            step.from_agent is not None,
        )
        return (
            (sql, [step.to.value, at, *fields.values(), *keys, *sources]),
            [self._event_sql(job_id, step.to, at, step.cause)],
        )

    async def record_late(
        self, job_id: str, branch_id: str, state: JobState, late: bytes, cause: str
    ) -> JobRecord | None:
        """Record a reply that came after the job was final: the job keeps ``state`` (the
        update only matches a job of ``branch_id`` still in it), ``late`` is stored and the
        timeline gets a ``late_reply`` event. None when the job is not (or no longer) so."""
        at = time.time()
        first: Statement = (
            f"UPDATE jobs SET late = ? WHERE id = ? AND branch_id = ? AND state = ? "
            f"RETURNING {_COLUMNS}",
            [late, job_id, branch_id, state.value],
        )
        then = [self._event_sql(job_id, state, at, cause, "late_reply")]
        rows = await self._write(first, then, only_if_rows=True)
        return row_to_job(rows[0]) if rows else None

    async def set_error(self, job_id: str, state: JobState, error: bytes) -> bool:
        """Set the error of a job that is in ``state`` (no transition, no event): a final
        state's cause told more precisely. False when the job is not in ``state``."""
        sql = "UPDATE jobs SET error = ? WHERE id = ? AND state = ?"
        return await self._execute(sql, [error, job_id, state.value]) > 0

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", [job_id])
        return row_to_job(rows[0]) if rows else None

    async def timeline(self, job_id: str) -> list[JobEvent]:
        return events_of(await self._fetch(*self._timeline_sql(job_id)))

    @staticmethod
    def _timeline_sql(job_id: str) -> Statement:
        return (
            "SELECT state, at, cause, kind FROM job_events WHERE job_id = ? ORDER BY seq",
            [job_id],
        )

    async def list_jobs(
        self,
        *,
        branches: Iterable[str] | None,
        state: JobState | None = None,
        printer_id: str | None = None,
        kind: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[JobRecord]:
        """Jobs newest first (ids rise with time), optionally filtered; ``after`` is the last id
        of the previous page. ``branches`` None means every branch; an empty one finds nothing."""
        where: list[str] = []
        args: list[Any] = []
        if branches is not None:
            branch_list = list(branches)
            if not branch_list:
                return []
            where.append(f"branch_id IN ({', '.join('?' for _ in branch_list)})")
            args.extend(branch_list)
        for column, value in (("printer_id", printer_id), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
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


def _fresh(job: JobRecord) -> bool:
    """Whether ``job``'s idempotency key is still inside its window."""
    return time.time() - job.created_at < IDEMPOTENCY_WINDOW_S
