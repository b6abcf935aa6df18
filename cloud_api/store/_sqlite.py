"""SQLite backend (default): one file, WAL, one connection owned by one thread, group commit.

Every statement runs on the store's own thread, never on the event loop. The calls made in one
turn of the event loop are handed over together (one wake-up of the thread); the thread takes
whatever is queued when it wakes and commits the writes among it in one transaction, each write
in its own savepoint (so one that fails is rolled back alone), in submission order; every caller
hears back only after the commit that holds its write. A test print makes five writes (created,
sent, accepted, printing, printed): under load, the writes of many concurrent jobs share one
commit and one hop back to the loop instead of four round trips to a thread each.

Submission order is commit order, so the semantics are those of one transaction per call run
one after the other: every conditional transition sees the ones submitted before it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from ._base import SCHEMA, Statement, Store, StoreError

log = logging.getLogger("cloud_api.store")

T = TypeVar("T")

#: Calls committed together at most.
_MAX_BATCH: Final = 256

_Op = Callable[[sqlite3.Connection], Any]
#: (operation, writes?, future, its loop)
_Item = tuple[_Op, bool, "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class SqliteStore(Store):
    name = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[list[_Item] | None] = queue.SimpleQueue()
        #: Calls made during this turn of the event loop, handed over together at its end.
        self._pending: list[_Item] = []
        self._thread: threading.Thread | None = None
        #: Commits made (a commit holds every write queued when it started).
        self.commits = 0

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        store = cls(path)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        store._thread = threading.Thread(
            target=store._run, args=(ready, loop), name="job-store", daemon=True
        )
        store._thread.start()
        await ready
        return store

    async def close(self) -> None:
        if self._thread is not None:
            self._hand_over()  # calls made in this turn of the loop still run
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

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
        def op(conn: sqlite3.Connection) -> list[Sequence[Any]]:
            rows: list[Sequence[Any]] = list(conn.execute(first[0], list(first[1])).fetchall())
            if rows or not only_if_rows:
                for sql, args in then:
                    conn.execute(sql, list(args))
            return rows

        return await self._call(op)

    async def _write_each(
        self, writes: Sequence[tuple[Statement, Sequence[Statement]]], read: Statement | None = None
    ) -> tuple[list[list[Sequence[Any]]], list[Sequence[Any]]]:
        """Several conditional writes, then a read that sees them, as one store operation (one
        savepoint, one hand-over)."""

        def op(conn: sqlite3.Connection) -> tuple[list[list[Sequence[Any]]], list[Sequence[Any]]]:
            results: list[list[Sequence[Any]]] = []
            for (sql, args), then in writes:
                rows: list[Sequence[Any]] = list(conn.execute(sql, list(args)).fetchall())
                if rows:
                    for then_sql, then_args in then:
                        conn.execute(then_sql, list(then_args))
                results.append(rows)
            read_rows = list(conn.execute(read[0], list(read[1])).fetchall()) if read else []
            return results, read_rows

        return await self._call(op)

    def _call(
        self, op: Callable[[sqlite3.Connection], T], *, write: bool = True
    ) -> asyncio.Future[T]:
        """Queue ``op`` for the store's thread; await the result (after its commit)."""
        if self._thread is None:
            raise StoreError(f"sqlite {self.path}: the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._hand_over)
        self._pending.append((op, write, future, loop))
        return future

    def _hand_over(self) -> None:
        """One wake-up of the store's thread for all calls made in one turn of the loop."""
        batch, self._pending = self._pending, []
        if batch:
            self._queue.put(batch)

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
        return conn

    def _run(self, ready: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn = self._connect()
        except Exception as exc:  # reported to the opener, who raises it
            loop.call_soon_threadsafe(_settle_one, ready, None, exc)
            return
        loop.call_soon_threadsafe(_settle_one, ready, None, None)
        try:
            while True:
                items = self._queue.get()
                if items is None:
                    return
                batch = list(items)
                while len(batch) < _MAX_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)  # finish this batch, then stop
                        break
                    batch.extend(more)
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        results: list[tuple[Any, BaseException | None]] = []
        writes = any(write for _, write, _, _ in batch)
        try:
            if writes:
                conn.execute("BEGIN IMMEDIATE")
            for op, write, _, _ in batch:
                if not write:
                    try:
                        results.append((op(conn), None))
                    except Exception as exc:
                        results.append((None, exc))
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    result = op(conn)
                except Exception as exc:  # one failing write does not sink the batch
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((None, exc))
                else:
                    conn.execute("RELEASE op")
                    results.append((result, None))
            if writes:
                conn.execute("COMMIT")
                self.commits += 1
        except sqlite3.Error as exc:
            log.exception("job store commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [(None, exc)] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
        for (_, _, future, loop), (result, error) in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((future, result, error))
        for loop, settled in by_loop.items():
            # One hop back per loop and batch; callers resume in submission order.
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # the loop closed while its calls were queued: nobody waits
                pass


def _settle_all(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in settled:
        _settle_one(future, result, exc)


def _settle_one(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
