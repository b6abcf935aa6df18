"""The job ledger and the reply outbox: one SQLite file (WAL) in the agent's data dir.

One row per job id (the request's correlation data)::

    received ──> printing ──> printed
     │   ▲ │        ├──────> failed            the printer failed before any byte was sent
     │   │ │        ├──────> expired           time ran out before the first byte
     │   │ │        └──────> outcome_unknown   bytes were sent, then the printer failed (or the
     │   │ │                                   agent stopped): the ticket may be on paper
     │   │ ├──> cancelled                      job.cancel arrived first
     │   │ ├──> expired                        the deadline passed before printing started
     │   │ └──> failed                         refused before printing (printer gone, bad content)
     ▼   │
    waiting ──> printing / cancelled / expired  a print job held until its printer is ready
                                               (offline, out of paper, cover open); error_code
                                               says which

The ``printing`` mark is committed before a single byte goes to the printer; that commit is the
point of no return. Every reply is written to the ``outbox`` table in the same transaction as the
state change it reports, so a state and the reply that announces it exist together or not at all.

All SQLite work runs on a writer thread (:mod:`groupcommit`), never on the event loop (with
``sync="full"`` every commit is an fsync). The thread commits whatever is queued in one
transaction (group commit), each operation in its own savepoint, so a burst of requests costs one
fsync, not one per request.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Self, TypeVar

from groupcommit import Database, Writer

log = logging.getLogger("branch_agent.ledger")

T = TypeVar("T")

LedgerSync = Literal["full", "normal"]
LEDGER_FILE: Final = "ledger.sqlite3"
#: Operations committed together at most (a burst bigger than this takes several commits).
_MAX_BATCH: Final = 512


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

_SCHEMA = """
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
    """A reply waiting for the broker's PUBACK; ``seq`` is the publishing order."""

    seq: int
    job_id: str | None
    topic: str
    correlation: bytes | None
    payload: bytes


class Tx:
    """The operations available inside a ledger transaction (runs on the writer thread; one per
    open ledger)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.new_outbox: list[OutboxEntry] = []
        #: Jobs whose replies a retry retargeted while they were open (see :meth:`current`).
        self._retargeted: set[str] = set()

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
        """Queue a reply in the outbox; it is published after this transaction commits."""
        cursor = self._conn.execute(
            "INSERT INTO outbox (job_id, topic, correlation, payload, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (job_id, topic, correlation, payload, time.time()),
        )
        assert cursor.lastrowid is not None
        self.new_outbox.append(OutboxEntry(cursor.lastrowid, job_id, topic, correlation, payload))

    def outbox(self) -> list[OutboxEntry]:
        rows = self._conn.execute(
            "SELECT seq, job_id, topic, correlation, payload FROM outbox ORDER BY seq"
        ).fetchall()
        return [OutboxEntry(*row) for row in rows]

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
        return int(jobs + replies)

    def counts(self) -> dict[JobState, int]:
        rows = self._conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
        return {JobState(state): int(n) for state, n in rows}


#: An operation inside a ledger transaction.
LedgerOp = Callable[[Tx], object]


class Ledger:
    """The ledger file on a :class:`groupcommit.Writer`; an async context manager.

    ``submit(op)`` queues ``op(tx)`` at once and returns a future resolved after the commit that
    includes it, so operations commit in submission order. ``sync`` is SQLite's ``synchronous``:
    ``"full"`` fsyncs every commit (survives power loss), ``"normal"`` fsyncs only at
    checkpoints (survives a crash of the agent, not of the machine).

    A real agent's ledger runs its own writer thread (``ledger``). Many agents in one process (a
    simulation) pass one shared ``writer``: its thread then commits for all their ledgers, one
    transaction per ledger and batch, and outlives them.
    """

    def __init__(
        self, path: Path, *, sync: LedgerSync = "full", writer: Writer | None = None
    ) -> None:
        self.path = path
        self.sync = sync
        self._shared = writer
        self._own: Writer | None = None
        self._db: Database[Tx, OutboxEntry] | None = None
        self._last: Database[Tx, OutboxEntry] | None = None
        self._outbox_listener: Callable[[list[OutboxEntry]], None] | None = None
        #: Work waiting for the next transaction (see :meth:`ride_along`).
        self._riders: list[Callable[[], LedgerOp | None]] = []
        self._linger: asyncio.TimerHandle | None = None
        self._boarded: set[asyncio.Future[object]] = set()

    @property
    def commits(self) -> int:
        """Commits made to this ledger since it was opened."""
        return self._last.commits if self._last is not None else 0

    def on_outbox(self, listener: Callable[[list[OutboxEntry]], None]) -> None:
        """Call ``listener`` on the event loop with the outbox entries of every commit, in order,
        before the futures of that commit resolve."""
        self._outbox_listener = listener

    async def __aenter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = self._shared
        if writer is None:
            writer = self._own = Writer(name="ledger", max_batch=_MAX_BATCH)
            writer.start()
        try:
            self._db = self._last = await writer.open(
                self._connect,
                Tx,
                harvest=Tx.take_outbox,
                on_commit=self._committed,
                name=str(self.path),
            )
        except BaseException:
            await self._close_own()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._db is not None:
            await self.flush_riders()
        db, self._db = self._db, None
        if db is not None:
            await db.close()
        await self._close_own()

    async def _close_own(self) -> None:
        own, self._own = self._own, None
        if own is not None:
            await own.close()

    def submit(self, op: Callable[[Tx], T]) -> asyncio.Future[T]:
        """Queue ``op`` for the writer thread; the future resolves after its commit."""
        db = self._db
        if db is None:
            raise RuntimeError("ledger is not open")
        if self._riders:
            self._board(db)
        return db.submit(op)

    def ride_along(self, take: Callable[[], LedgerOp | None], linger: float) -> None:
        """Run work that needs no commit of its own in the ledger's next transaction.

        ``take()`` is called when the next operation is submitted (its operation then commits in
        the same transaction, in a savepoint of its own), or after ``linger`` seconds if none is;
        ``take`` registered again before that is called once. For work a crash may lose, such as
        forgetting replies the broker acknowledged.
        """
        if take not in self._riders:
            self._riders.append(take)
        if self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(linger, self._board_alone)

    async def flush_riders(self) -> None:
        """Submit the work waiting to ride along, and wait for what was submitted so far."""
        if self._riders and self._db is not None:
            self._board(self._db)
        if self._boarded:
            await asyncio.gather(*self._boarded, return_exceptions=True)

    def _board(self, db: Database[Tx, OutboxEntry]) -> None:
        riders, self._riders = self._riders, []
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        for take in riders:
            op = take()
            if op is not None:
                future = db.submit(op)
                self._boarded.add(future)
                future.add_done_callback(self._landed)

    def _board_alone(self) -> None:
        self._linger = None
        if self._riders and self._db is not None:
            self._board(self._db)

    def _landed(self, future: asyncio.Future[object]) -> None:
        self._boarded.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("ledger: work riding along failed: %s", future.exception())

    async def call(self, op: Callable[[Tx], T]) -> T:
        return await self.submit(op)

    def _committed(self, entries: list[OutboxEntry]) -> None:
        if self._outbox_listener is not None:
            self._outbox_listener(entries)

    # --- writer thread ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.sync.upper()}")
        conn.executescript(_SCHEMA)
        return conn
