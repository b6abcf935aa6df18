"""The shared SQLite group-commit writer (:mod:`groupcommit`), on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from groupcommit import Database, Writer, WriterClosed

Conn = sqlite3.Connection


def _connector(path: Path, *, deferred_fk: bool = False) -> Callable[[], Conn]:
    def connect() -> Conn:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER)")
        if deferred_fk:
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS child (k TEXT REFERENCES t (k) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
        return conn

    return connect


def _same(conn: Conn) -> Conn:
    return conn


def _rows(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        return [tuple(r) for r in conn.execute("SELECT k, v FROM t ORDER BY rowid")]


def _put(k: str, v: int = 0) -> Callable[[Conn], None]:
    return lambda conn: conn.execute("INSERT INTO t VALUES (?, ?)", (k, v)) and None


@pytest.fixture
async def writer() -> AsyncIterator[Writer]:
    async with Writer(name="test-writer") as running:
        yield running


async def _open(writer: Writer, path: Path, **kw: object) -> Database[Conn, object]:
    return await writer.open(_connector(path, **kw), _same, name=path.name)  # type: ignore[arg-type]


async def test_calls_commit_in_submission_order_and_reads_see_earlier_writes(
    writer: Writer, tmp_path: Path
) -> None:
    db = await _open(writer, tmp_path / "a.db")
    writes = [db.submit(_put(f"k{i}", i)) for i in range(600)]
    count = db.submit(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0], write=False)
    bump = db.submit(lambda c: c.execute("UPDATE t SET v = v + 1000 WHERE k = 'k599'").rowcount)
    await asyncio.gather(*writes)
    assert (await count, await bump) == (600, 1)
    assert _rows(tmp_path / "a.db")[:3] == [("k0", 0), ("k1", 1), ("k2", 2)]
    assert _rows(tmp_path / "a.db")[-1] == ("k599", 1599)
    assert db.commits < 600  # group commit


async def test_a_failing_write_is_rolled_back_alone(writer: Writer, tmp_path: Path) -> None:
    db = await _open(writer, tmp_path / "a.db")

    def half_then_boom(conn: Conn) -> None:
        conn.execute("INSERT INTO t VALUES ('half', 1)")
        raise RuntimeError("boom")

    # In a batch with others (a savepoint each) ...
    before = db.submit(_put("before"))
    bad = db.submit(half_then_boom)
    dup = db.submit(_put("before"))  # a constraint error is an operation's own failure too
    after = db.submit(_put("after"))
    await asyncio.gather(before, after)
    with pytest.raises(RuntimeError, match="boom"):
        await bad
    with pytest.raises(sqlite3.IntegrityError):
        await dup
    # ... and alone in its transaction, followed by a read in the same batch.
    alone = db.submit(half_then_boom)
    read = db.submit(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0], write=False)
    with pytest.raises(RuntimeError, match="boom"):
        await alone
    assert await read == 2
    assert _rows(tmp_path / "a.db") == [("before", 0), ("after", 0)]
    # The database takes further work as usual.
    await db.submit(_put("later"))
    assert len(_rows(tmp_path / "a.db")) == 3


async def test_several_databases_on_one_thread_one_transaction_each_per_batch(
    writer: Writer, tmp_path: Path
) -> None:
    paths = [tmp_path / f"{n}.db" for n in "abc"]
    dbs = [await _open(writer, p) for p in paths]
    broken = await _open(writer, tmp_path / "fk.db", deferred_fk=True)
    threads: set[str] = set()

    def where(conn: Conn) -> None:
        threads.add(threading.current_thread().name)

    # One loop turn: one hand-over, one batch, one commit per database.
    futures = [
        db.submit(_put(f"{n}{i}", i)) for i in range(5) for n, db in zip("abc", dbs, strict=True)
    ]
    futures += [db.submit(where) for db in dbs]
    # A commit that fails (a deferred constraint, checked at COMMIT) fails that database's
    # calls only.
    orphan = broken.submit(lambda c: c.execute("INSERT INTO child VALUES ('nobody')") and None)
    await asyncio.gather(*futures)
    with pytest.raises(sqlite3.IntegrityError):
        await orphan
    assert threads == {"test-writer"}
    assert [db.commits for db in dbs] == [1, 1, 1]
    assert broken.commits == 0
    for n, path in zip("abc", paths, strict=True):
        assert _rows(path) == [(f"{n}{i}", i) for i in range(5)]
    # Closing one database leaves the others working.
    await dbs[0].close()
    with pytest.raises(WriterClosed):
        dbs[0].submit(_put("x"))
    await dbs[1].submit(_put("b-more"))


async def test_commit_listener_runs_before_the_futures_of_its_commit(
    writer: Writer, tmp_path: Path
) -> None:
    class Ctx:
        def __init__(self, conn: Conn) -> None:
            self.conn = conn
            self.made: list[str] = []

        def take(self) -> list[str]:
            made, self.made = self.made, []
            return made

    heard: list[list[str]] = []
    db = await writer.open(
        _connector(tmp_path / "a.db"), Ctx, harvest=Ctx.take, on_commit=heard.append
    )

    def put(k: str, fail: bool = False) -> Callable[[Ctx], int]:
        def op(ctx: Ctx) -> int:
            ctx.conn.execute("INSERT INTO t VALUES (?, 0)", (k,))
            ctx.made.append(k)
            if fail:
                raise ValueError(k)
            return len(heard)

        return op

    futures = [db.submit(put("a")), db.submit(put("bad", fail=True)), db.submit(put("b"))]
    seen_at_resume: list[int] = []
    futures[0].add_done_callback(lambda _: seen_at_resume.append(len(heard)))
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert heard == [["a", "b"]]  # what the failed write produced is dropped
    assert seen_at_resume == [1]
    assert isinstance(results[1], ValueError)


async def test_closing_the_writer_runs_every_pending_call_first(tmp_path: Path) -> None:
    writer = Writer(name="closing")
    writer.start()
    db = await _open(writer, tmp_path / "a.db")
    gate = threading.Event()
    blocked = db.submit(lambda conn: gate.wait(5) and None)
    await asyncio.sleep(0.05)  # the thread is inside the first call
    queued = [db.submit(_put(f"k{i}")) for i in range(99)]
    await asyncio.sleep(0)  # handed over, not run yet
    this_turn = db.submit(_put("last"))  # not even handed over when the close starts
    threading.Timer(0.1, gate.set).start()
    await writer.close()
    assert all(f.done() and f.exception() is None for f in [blocked, *queued, this_turn])
    assert len(_rows(tmp_path / "a.db")) == 100
    with pytest.raises(WriterClosed):
        db.submit(_put("too late"))
    with pytest.raises(WriterClosed):
        await _open(writer, tmp_path / "b.db")
    await db.close()  # after the writer: nothing to do


async def test_a_caller_whose_loop_closed_does_not_stop_the_writer(
    writer: Writer, tmp_path: Path
) -> None:
    db = await _open(writer, tmp_path / "a.db")
    gate = threading.Event()
    blocked = db.submit(lambda conn: gate.wait(5) and None)

    async def submit_and_leave() -> None:
        db.submit(_put("from-a-dead-loop"))
        await asyncio.sleep(0)  # handed over; the loop then closes before the commit

    await asyncio.to_thread(asyncio.run, submit_and_leave())
    gate.set()
    await blocked
    await db.submit(_put("still-served"))
    assert [k for k, _ in _rows(tmp_path / "a.db")] == ["from-a-dead-loop", "still-served"]


async def test_a_connect_error_reaches_the_opener(writer: Writer, tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(sqlite3.OperationalError):
        await _open(writer, tmp_path / "dir.db")
    await (await _open(writer, tmp_path / "ok.db")).submit(_put("k"))
