"""SQLite backend (default): one file, WAL, one connection on one writer thread, group commit.

Every statement runs on the store's own :class:`groupcommit.Writer` thread (``job-store``), never
on the event loop. The calls made in one turn of the event loop are handed over together (one
wake-up of the thread); the thread takes whatever is queued when it wakes and commits the writes
among it in one transaction, each write in its own savepoint (so one that fails is rolled back
alone), in submission order; every caller hears back only after the commit that holds its write.
Reads run in the same order, outside savepoints. A test print makes at most four writes (created
as sent, then one per reply: accepted, printing, printed; replies waiting together are one):
under load, the writes of many concurrent jobs share one commit and one hop back to the loop.

Submission order is commit order, so the semantics are those of one transaction per call run
one after the other: every conditional transition sees the ones submitted before it. The same
mechanism keeps the branch agents' job ledgers (:mod:`groupcommit`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from groupcommit import Database, Writer, WriterClosed

from ._base import MIGRATIONS, SCHEMA, Statement, Store, StoreError

T = TypeVar("T")

#: Calls run together at most.
_MAX_BATCH: Final = 256


class SqliteStore(Store):
    name = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer = Writer(name="job-store", max_batch=_MAX_BATCH)
        self._db: Database[sqlite3.Connection, object] | None = None

    @property
    def commits(self) -> int:
        """Commits made (a commit holds every write queued when it started)."""
        return self._db.commits if self._db is not None else 0

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        store = cls(path)
        store._writer.start()
        try:
            store._db = await store._writer.open(store._connect, _connection, name=path)
        except BaseException:
            await store._writer.close()
            raise
        return store

    async def close(self) -> None:
        # Calls made in this turn of the loop still run, then the connection closes.
        await self._writer.close()

    async def ping(self) -> None:
        try:
            await self._call(lambda conn: conn.execute("SELECT 1").fetchall(), write=False)
        except Exception as exc:
            raise StoreError(f"sqlite {self.path}: {exc}") from exc

    async def _execute(self, sql: str, args: Sequence[Any]) -> int:
        return await self._call(lambda conn: int(conn.execute(sql, list(args)).rowcount))

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        return await self._call(
            lambda conn: list(conn.execute(sql, list(args)).fetchall()), write=False
        )

    async def _write(
        self, first: Statement, then: Sequence[Statement] = (), *, only_if_rows: bool = False
    ) -> list[Sequence[Any]]:
        return await self._call(lambda conn: _conditional(conn, first, then, only_if_rows))

    async def _write_each(
        self, writes: Sequence[tuple[Statement, Sequence[Statement]]], read: Statement | None = None
    ) -> tuple[list[list[Sequence[Any]]], list[Sequence[Any]]]:
        """Several conditional writes, then a read that sees them, as one store operation (one
        savepoint, one hand-over)."""

        def op(conn: sqlite3.Connection) -> tuple[list[list[Sequence[Any]]], list[Sequence[Any]]]:
            results = [_conditional(conn, first, then, True) for first, then in writes]
            read_rows = list(conn.execute(read[0], list(read[1])).fetchall()) if read else []
            return results, read_rows

        return await self._call(op)

    def _call(
        self, op: Callable[[sqlite3.Connection], T], *, write: bool = True
    ) -> asyncio.Future[T]:
        """Queue ``op`` for the store's thread; await the result (after its commit)."""
        if self._db is None:
            raise StoreError(f"sqlite {self.path}: the store is not open")
        try:
            return self._db.submit(op, write=write)
        except WriterClosed as exc:
            raise StoreError(f"sqlite {self.path}: the store is closed") from exc

    # --- the store's thread ----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a crash of the process (the API restart tests); FULL would add an
        # fsync per commit for power loss, which a cloud deployment gets from PostgreSQL instead.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        for statement in SCHEMA:
            conn.execute(statement.format(blob="BLOB", serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
        for table, column, kind in MIGRATIONS:  # an older database gains the newer columns
            names = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in names:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind.format(blob='BLOB')}")
        return conn


def _connection(conn: sqlite3.Connection) -> sqlite3.Connection:
    return conn


def _conditional(
    conn: sqlite3.Connection, first: Statement, then: Sequence[Statement], only_if_rows: bool
) -> list[Sequence[Any]]:
    """``first`` (its rows are the result), then ``then`` — with ``only_if_rows``, only when
    ``first`` returned a row. Inside the writer's transaction."""
    rows: list[Sequence[Any]] = list(conn.execute(first[0], list(first[1])).fetchall())
    if rows or not only_if_rows:
        for sql, args in then:
            conn.execute(sql, list(args))
    return rows
