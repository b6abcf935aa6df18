"""The ledger's rows and the operations of one transaction (on the writer thread).

The file, its writer thread and group commit are in :mod:`._ledger`; the states and their
transitions are drawn there. Here: the job states, the two tables, their row types, and
:class:`Tx`, everything an operation may do inside a transaction.

Progress replies (``accepted``, ``printing``) are tracked per job and reply topic while they
sit in the outbox: the job's ``done`` reply deletes them in its own transaction (they say nothing
it does not), and names them in :attr:`OutboxEntry.supersedes` so the outbox drops them unsent
(see :mod:`._outbox`). A ``failed`` reply keeps them: how far the job got is part of its story.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from dataclasses import dataclass
from typing import Final

from protocol import FINAL_STAGES, PROGRESS_STAGES, reply_stage


class JobState(enum.StrEnum):
    RECEIVED = "received"
    #: A print job held until its printer is ready (``error_code``: what it waits for).
    WAITING = "waiting"
    PRINTING = "printing"
    PRINTED = "printed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    OUTCOME_UNKNOWN = "outcome_unknown"


#: States a job never leaves.
FINAL_STATES: Final = frozenset(
    {
        JobState.PRINTED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.EXPIRED,
        JobState.OUTCOME_UNKNOWN,
    }
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    method      TEXT NOT NULL,
    printer     TEXT NOT NULL,
    params      BLOB NOT NULL,
    reply_to    TEXT NOT NULL,
    correlation BLOB NOT NULL,
    deadline    REAL,
    final_reply BLOB,
    error_code  TEXT,
    received_at REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, received_at);
CREATE INDEX IF NOT EXISTS jobs_by_age ON jobs (updated_at);
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT,
    topic       TEXT NOT NULL,
    correlation BLOB,
    payload     BLOB NOT NULL,
    created_at  REAL NOT NULL
);
"""

_JOB_COLUMNS = (
    "job_id, state, method, printer, params, reply_to, correlation, deadline, final_reply, "
    "error_code, received_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One ledger row: everything needed to resume, replay or report the job."""

    job_id: str
    state: JobState
    method: str
    printer: str
    params: bytes
    reply_to: str
    correlation: bytes
    deadline: float | None
    final_reply: bytes | None = None
    error_code: str | None = None
    received_at: float = 0.0
    updated_at: float = 0.0

    @classmethod
    def _from_row(cls, row: tuple[object, ...]) -> JobRecord:
        values = list(row)
        values[1] = JobState(str(values[1]))
        return cls(*values)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A reply waiting for the broker's PUBACK; ``seq`` is the publishing order.

    ``progress``: an ``accepted`` or ``printing`` reply, which the outbox may hold back for a
    moment. ``supersedes``: the progress replies of the same job and topic this (final) reply
    replaced; their rows were deleted in the same transaction.
    """

    seq: int
    job_id: str | None
    topic: str
    correlation: bytes | None
    payload: bytes
    progress: bool = False
    supersedes: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[str, str] | None:
        """The job and reply topic whose replies must keep their order (None: no job id)."""
        return (self.job_id, self.topic) if self.job_id is not None else None


class Tx:
    """The operations available inside a ledger transaction (runs on the writer thread; one per
    open ledger)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.new_outbox: list[OutboxEntry] = []
        #: Jobs whose replies a retry retargeted while they were open (see :meth:`current`).
        self._retargeted: set[str] = set()
        #: Outbox rows of progress replies, by job and reply topic, until the job's final.
        self._progress: dict[tuple[str, str], list[int]] = {}

    def take_outbox(self) -> list[OutboxEntry]:
        """The replies queued since the last call (after each operation, by the writer)."""
        entries, self.new_outbox = self.new_outbox, []
        return entries

    def get(self, job_id: str) -> JobRecord | None:
        row = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
        ).fetchone()
        return JobRecord._from_row(row) if row else None

    def current(self, job: JobRecord) -> JobRecord:
        """``job`` as the ledger holds it now: the caller's copy (taken from the ledger when the
        job was admitted or recovered), unless a retry retargeted its replies since."""
        if job.job_id in self._retargeted:
            return self.get(job.job_id) or job
        return job

    def insert(self, job: JobRecord) -> None:
        self._insert(job)

    def insert_new(self, job: JobRecord) -> bool:
        """Insert ``job`` unless its id is known already; True if it was inserted."""
        return self._insert(job, " ON CONFLICT (job_id) DO NOTHING") == 1

    def _insert(self, job: JobRecord, on_conflict: str = "") -> int:
        return self._conn.execute(
            f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            + on_conflict,
            (
                job.job_id,
                job.state.value,
                job.method,
                job.printer,
                job.params,
                job.reply_to,
                job.correlation,
                job.deadline,
                job.final_reply,
                job.error_code,
                job.received_at,
                job.updated_at,
            ),
        ).rowcount

    def transition(
        self,
        job_id: str,
        to: JobState,
        *,
        expect: JobState | tuple[JobState, ...],
        final_reply: bytes | None = None,
        error_code: str | None = None,
    ) -> bool:
        """Move ``job_id`` from ``expect`` (one state or several) to ``to``; False (nothing
        changed) from any other state. ``error_code`` replaces the row's (None clears it).

        This compare-and-set is what settles races: cancel against print, a resumed job
        against its redelivered twin.
        """
        expected = (expect,) if isinstance(expect, JobState) else expect
        marks = ", ".join("?" * len(expected))
        cursor = self._conn.execute(
            "UPDATE jobs SET state = ?, final_reply = coalesce(?, final_reply), "
            f"error_code = ?, updated_at = ? WHERE job_id = ? AND state IN ({marks})",
            (
                to.value,
                final_reply,
                error_code,
                time.time(),
                job_id,
                *(state.value for state in expected),
            ),
        )
        if to in FINAL_STATES:
            self._retargeted.discard(job_id)
        return cursor.rowcount == 1

    def retarget(self, job_id: str, reply_to: str) -> None:
        """Send the job's later replies to ``reply_to`` (a retry from another API instance)."""
        self._conn.execute("UPDATE jobs SET reply_to = ? WHERE job_id = ?", (reply_to, job_id))
        self._retargeted.add(job_id)

    def in_state(self, *states: JobState) -> list[JobRecord]:
        marks = ", ".join("?" * len(states))
        rows = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ({marks}) ORDER BY received_at, rowid",
            tuple(state.value for state in states),
        ).fetchall()
        return [JobRecord._from_row(row) for row in rows]

    def reply(
        self, job_id: str | None, topic: str, correlation: bytes | None, payload: bytes
    ) -> None:
        """Queue a reply in the outbox; it is published after this transaction commits.

        A ``done`` reply deletes the job's progress replies to the same topic still in the outbox
        (published or not: the final says all they said) and names them in ``supersedes``; a
        ``failed`` one goes after them.
        """
        cursor = self._conn.execute(
            "INSERT INTO outbox (job_id, topic, correlation, payload, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (job_id, topic, correlation, payload, time.time()),
        )
        seq = cursor.lastrowid
        assert seq is not None
        self.new_outbox.append(self._entry(seq, job_id, topic, correlation, payload))

    def _entry(
        self, seq: int, job_id: str | None, topic: str, correlation: bytes | None, payload: bytes
    ) -> OutboxEntry:
        if job_id is None:
            return OutboxEntry(seq, job_id, topic, correlation, payload)
        stage = reply_stage(payload)
        key = (job_id, topic)
        if stage in PROGRESS_STAGES:
            seqs = self._progress.setdefault(key, [])
            if seq not in seqs:  # (read again by ``outbox()``)
                seqs.append(seq)
            return OutboxEntry(seq, job_id, topic, correlation, payload, progress=True)
        replaced = self._progress.pop(key, None) if stage in FINAL_STAGES else None
        if replaced and stage == "done":
            # A failure keeps the progress it reached (sent ahead of it): the timeline shows how
            # far the job got before the printer or the deadline stopped it.
            self._conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in replaced])
            return OutboxEntry(seq, job_id, topic, correlation, payload, supersedes=tuple(replaced))
        return OutboxEntry(seq, job_id, topic, correlation, payload)

    def outbox(self) -> list[OutboxEntry]:
        """Every reply in the outbox, in order (at start: what a previous run left)."""
        rows = self._conn.execute(
            "SELECT seq, job_id, topic, correlation, payload FROM outbox ORDER BY seq"
        ).fetchall()
        return [self._entry(*row) for row in rows]

    def outbox_remove(self, seqs: list[int]) -> None:
        self._conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def prune(self, before: float) -> int:
        """Forget ended jobs and undelivered replies last touched before ``before``."""
        finals = [s.value for s in FINAL_STATES]
        marks = ", ".join("?" * len(finals))
        jobs = self._conn.execute(
            f"DELETE FROM jobs WHERE updated_at < ? AND state IN ({marks})", (before, *finals)
        ).rowcount
        replies = self._conn.execute("DELETE FROM outbox WHERE created_at < ?", (before,)).rowcount
        # Forgets progress replies of jobs that never ended here (retargeted elsewhere, say):
        # a final for one of the others then leaves its progress to be sent, as before.
        self._progress.clear()
        return int(jobs + replies)

    def counts(self) -> dict[JobState, int]:
        rows = self._conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
        return {JobState(state): int(n) for state, n in rows}
