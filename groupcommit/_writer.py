"""The writer thread, the databases it serves and the order it keeps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Final, Generic, Self, TypeVar

log = logging.getLogger("groupcommit")

T = TypeVar("T")
#: What the operations of a database receive (a connection, or an object wrapping it).
C = TypeVar("C")
#: What a database's operations produce for its commit listener (e.g. replies to publish).
E = TypeVar("E")

_READ: Final = 0
_WRITE: Final = 1
_OPEN: Final = 2
_CLOSE: Final = 3

#: (database, operation, kind, future)
_Item = tuple["Database[Any, Any]", Callable[..., Any], int, "asyncio.Future[Any]"]
#: (future, result, error), or (None, commit listener, what the commit produced)
_Delivery = tuple[Any, Any, Any]


class WriterClosed(RuntimeError):
    """The writer or the database is closed: the call was not run."""


class Writer:
    """One thread that runs the SQLite work of one or more databases; group commit.

    Start it with ``async with Writer(...)`` (or :meth:`start` and :meth:`close`), then
    :meth:`open` a database on it. Calls made in one turn of an event loop reach the thread in one
    wake-up; the thread runs whatever is queued when it wakes as one batch (it stops taking more
    hand-overs once the batch holds ``max_batch`` calls): per database in the batch one
    transaction, each write in its own savepoint. Closing the writer runs every call made before
    it, then closes the databases still open.
    """

    def __init__(self, *, name: str = "sqlite-writer", max_batch: int = 512) -> None:
        self.name = name
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[list[_Item] | None] = queue.SimpleQueue()
        #: Calls made during the current turn of each event loop, handed over at its end.
        self._pending: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopped = False
        #: Hand-overs and the final sweep of the queue exclude each other (several loops).
        self._handing = threading.Lock()
        #: Databases open on the thread (touched by the thread only).
        self._open: set[Database[Any, Any]] = set()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._thread is not None or self._closed:
            raise RuntimeError(f"writer {self.name} already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Run every call made so far, close the databases still open, end the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        self._hand_over(asyncio.get_running_loop())  # calls of this loop turn still run
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        with self._handing:
            self._stopped = True
            leftovers = _drain(self._queue)
        _fail(leftovers)  # handed over by another loop after the stop mark

    async def open(
        self,
        connect: Callable[[], sqlite3.Connection],
        context: Callable[[sqlite3.Connection], C],
        *,
        harvest: Callable[[C], list[E]] | None = None,
        on_commit: Callable[[list[E]], None] | None = None,
        name: str = "",
    ) -> Database[C, E]:
        """Connect (on the thread) and return the database; ``connect``'s error is raised here.

        Operations receive ``context(connection)``. With ``harvest``, the thread calls it after
        each write to take what the write produced (what a failed write produced is dropped), and
        ``on_commit`` is called on the event loop with what the writes of one commit produced,
        before the futures of that commit resolve.
        """
        database: Database[C, E] = Database(self, context, harvest, on_commit, name)
        await self._submit(database, connect, _OPEN)
        return database

    def _submit(self, database: Database[Any, Any], op: Callable[..., Any], kind: int) -> Any:
        if self._closed or self._thread is None:
            raise WriterClosed(f"writer {self.name} is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append((database, op, kind, future))
        return future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """One wake-up of the thread for all calls made in one turn of ``loop``."""
        items = self._pending.pop(loop, None)
        if not items:
            return
        with self._handing:
            if not self._stopped:
                self._queue.put(items)
                return
        _fail([items])

    # --- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._queue.get()
                if batch is None:
                    return
                while len(batch) < self.max_batch:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)  # finish this batch, then stop
                        break
                    batch.extend(more)
                self._run_batch(batch)
        finally:
            for database in self._open:
                database._disconnect()
            self._open.clear()

    def _run_batch(self, batch: list[_Item]) -> None:
        by_database: dict[Database[Any, Any], list[_Item]] = {}
        for item in batch:
            calls = by_database.get(item[0])
            if calls is None:
                by_database[item[0]] = [item]
            else:
                calls.append(item)
        deliveries: dict[asyncio.AbstractEventLoop, list[_Delivery]] = {}
        for database, calls in by_database.items():
            run: list[_Item] = []
            for item in calls:
                if item[2] == _OPEN or item[2] == _CLOSE:
                    if run:
                        database._commit(run, deliveries)
                        run = []
                    self._control(database, item, deliveries)
                else:
                    run.append(item)
            if run:
                database._commit(run, deliveries)
        for loop, settled in deliveries.items():
            # One hop back per loop and batch; callers resume in submission order.
            try:
                loop.call_soon_threadsafe(_deliver, settled)
            except RuntimeError:  # the loop closed while its calls were queued: nobody waits
                pass

    def _control(
        self,
        database: Database[Any, Any],
        item: _Item,
        deliveries: dict[asyncio.AbstractEventLoop, list[_Delivery]],
    ) -> None:
        _, op, kind, future = item
        error: BaseException | None = None
        try:
            if kind == _OPEN:
                database._connect(op())
                self._open.add(database)
            else:
                self._open.discard(database)
                database._disconnect()
        except Exception as exc:  # reported to the opener, who raises it
            error = exc
        _add(deliveries, future.get_loop(), (future, None, error))


class Database(Generic[C, E]):
    """One SQLite database served by a :class:`Writer`; made by :meth:`Writer.open`."""

    def __init__(
        self,
        writer: Writer,
        context: Callable[[sqlite3.Connection], C],
        harvest: Callable[[C], list[E]] | None,
        on_commit: Callable[[list[E]], None] | None,
        name: str,
    ) -> None:
        self.writer = writer
        self.name = name
        self._context = context
        self._harvest = harvest
        self._on_commit = on_commit
        self._closed = False
        #: Commits made (a commit holds every write of this database in one batch).
        self.commits = 0
        # Owned by the writer thread:
        self._conn: sqlite3.Connection | None = None
        self._ctx: C | None = None

    def submit(self, op: Callable[[C], T], *, write: bool = True) -> asyncio.Future[T]:
        """Queue ``op(context)``; the future resolves after the commit that holds it.

        Calls run in submission order, so a call sees the writes submitted before it. A read
        (``write=False``) runs in the same order, outside any savepoint.
        """
        if self._closed:
            raise WriterClosed(f"database {self.name} is closed")
        future: asyncio.Future[T] = self.writer._submit(self, op, _WRITE if write else _READ)
        return future

    async def call(self, op: Callable[[C], T], *, write: bool = True) -> T:
        return await self.submit(op, write=write)

    async def close(self) -> None:
        """Run every call made so far, then close the connection."""
        if self._closed:
            return
        self._closed = True
        if not self.writer._closed:
            await self.writer._submit(self, _nothing, _CLOSE)

    # --- on the writer thread ----------------------------------------------------------------

    def _connect(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._ctx = self._context(conn)

    def _disconnect(self) -> None:
        conn, self._conn, self._ctx = self._conn, None, None
        if conn is not None:
            conn.close()

    def _commit(
        self, calls: list[_Item], deliveries: dict[asyncio.AbstractEventLoop, list[_Delivery]]
    ) -> None:
        """Run ``calls`` in one transaction (if any writes), each write in its own savepoint.

        A lone write needs no savepoint: if it fails, the transaction is rolled back instead.
        """
        conn, harvest = self._conn, self._harvest
        ctx: Any = self._ctx
        results: list[tuple[Any, BaseException | None]] = []
        produced: list[E] = []
        if conn is None:
            closed = WriterClosed(f"database {self.name} is not open")
            results = [(None, closed)] * len(calls)
        else:
            writes = sum(1 for item in calls if item[2] == _WRITE)
            savepoints = writes > 1
            in_tx = False
            try:
                if writes:
                    conn.execute("BEGIN IMMEDIATE")
                    in_tx = True
                for _, op, kind, _ in calls:
                    if kind == _READ:
                        try:
                            results.append((op(ctx), None))
                        except Exception as exc:
                            results.append((None, exc))
                        continue
                    if savepoints:
                        conn.execute("SAVEPOINT op")
                    try:
                        result = op(ctx)
                    except Exception as exc:  # one failing write does not sink the batch
                        if savepoints:
                            conn.execute("ROLLBACK TO op")
                            conn.execute("RELEASE op")
                        else:
                            conn.execute("ROLLBACK")
                            in_tx = False
                        if harvest is not None:
                            harvest(ctx)
                        results.append((None, exc))
                    else:
                        if savepoints:
                            conn.execute("RELEASE op")
                        if harvest is not None:
                            produced.extend(harvest(ctx))
                        results.append((result, None))
                if in_tx:
                    conn.execute("COMMIT")
                    self.commits += 1
            except sqlite3.Error as exc:
                log.exception("commit to %s failed", self.name)
                with contextlib.suppress(sqlite3.Error):  # the thread must go on serving
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                if harvest is not None:
                    harvest(ctx)
                results = [(None, exc)] * len(calls)
                produced = []
        if produced and self._on_commit is not None:
            _add(deliveries, calls[0][3].get_loop(), (None, self._on_commit, produced))
        for (_, _, _, future), (result, error) in zip(calls, results, strict=True):
            _add(deliveries, future.get_loop(), (future, result, error))


def _nothing(_: object) -> None:
    return None


def _add(
    deliveries: dict[asyncio.AbstractEventLoop, list[_Delivery]],
    loop: asyncio.AbstractEventLoop,
    delivery: _Delivery,
) -> None:
    settled = deliveries.get(loop)
    if settled is None:
        deliveries[loop] = [delivery]
    else:
        settled.append(delivery)


def _deliver(settled: list[_Delivery]) -> None:
    """On the loop: commit listeners, then the futures, in the order the thread ran them."""
    for future, result, error in settled:
        if future is None:
            try:
                result(error)  # the commit listener, with what the commit produced
            except Exception:
                log.exception("commit listener failed")
            continue
        if future.done():  # the caller gave up waiting
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _drain(q: queue.SimpleQueue[list[_Item] | None]) -> list[list[_Item]]:
    items: list[list[_Item]] = []
    while True:
        try:
            more = q.get_nowait()
        except queue.Empty:
            return items
        if more is not None:
            items.append(more)


def _fail(handed: list[list[_Item]]) -> None:
    for items in handed:
        for database, _, _, future in items:
            error = WriterClosed(f"writer {database.writer.name} closed before this call ran")
            try:
                future.get_loop().call_soon_threadsafe(_deliver, [(future, None, error)])
            except RuntimeError:
                pass
