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
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal, Self, TypeVar

from groupcommit import Database, Writer

from ._ledger_tx import FINAL_STATES, SCHEMA, JobRecord, JobState, OutboxEntry, Tx

__all__ = [
    "FINAL_STATES",
    "LEDGER_FILE",
    "JobRecord",
    "JobState",
    "Ledger",
    "LedgerOp",
    "LedgerSync",
    "OutboxEntry",
    "Tx",
]

log = logging.getLogger("branch_agent.ledger")

T = TypeVar("T")

LedgerSync = Literal["full", "normal"]
LEDGER_FILE: Final = "ledger.sqlite3"
#: Operations committed together at most (a burst bigger than this takes several commits).
_MAX_BATCH: Final = 512


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
        conn.executescript(SCHEMA)
        return conn
