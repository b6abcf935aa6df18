"""Unit tests of the agent's ledger, outbox and job lifecycle, on a real SQLite file and a real
virtual printer (no broker: replies are read from the outbox)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from branch_agent._jobs import Admission, CancelRequest, JobRequest, Jobs, PrinterSlot, Refusal
from branch_agent._ledger import LEDGER_FILE, JobRecord, JobState, Ledger, OutboxEntry, Tx
from branch_agent._outbox import FLUSH_DELAY_S, Outbox
from branch_agent._printers import VirtualPrinter
from groupcommit import Writer
from protocol import ErrorCode, decode_reply, encode
from protocol._messages import Done, Failed, PrintResult

from ._wait import eventually_async

TOPIC = "pm/v1/b1/reply/debug/a1"


def _record(job_id: str, state: JobState = JobState.RECEIVED, **kw: object) -> JobRecord:
    now = time.time()
    fields: dict[str, object] = {
        "job_id": job_id,
        "state": state,
        "method": "printer.test",
        "printer": "P1",
        "params": b'{"printer":"P1"}',
        "reply_to": TOPIC,
        "correlation": job_id.encode(),
        "deadline": None,
        "received_at": now,
        "updated_at": now,
    }
    fields.update(kw)
    return JobRecord(**fields)  # type: ignore[arg-type]


# --- ledger --------------------------------------------------------------------------------


async def test_ledger_runs_sqlite_off_the_event_loop_with_the_configured_sync(
    tmp_path: Path,
) -> None:
    for sync, expected in (("full", 2), ("normal", 1)):
        async with Ledger(tmp_path / f"{sync}.db", sync=sync) as ledger:  # type: ignore[arg-type]
            thread, level, mode = await ledger.call(
                lambda tx: (
                    threading.current_thread().name,
                    tx._conn.execute("PRAGMA synchronous").fetchone()[0],
                    tx._conn.execute("PRAGMA journal_mode").fetchone()[0],
                )
            )
        assert thread == "ledger" and thread != threading.main_thread().name
        assert (level, mode) == (expected, "wal")


async def test_operations_commit_in_order_and_a_failing_one_sinks_only_itself(
    ledger: Ledger,
) -> None:
    def boom(tx: Tx) -> None:
        tx.insert(_record("bad"))
        raise RuntimeError("boom")

    futures = [ledger.submit(lambda tx, i=i: tx.insert(_record(f"j{i}"))) for i in range(300)]
    bad = ledger.submit(boom)
    futures += [ledger.submit(lambda tx: tx.insert(_record("after")))]
    await asyncio.gather(*futures)
    with pytest.raises(RuntimeError, match="boom"):
        await bad
    received = await ledger.call(lambda tx: tx.in_state(JobState.RECEIVED))
    assert [j.job_id for j in received] == [f"j{i}" for i in range(300)] + ["after"]
    assert await ledger.call(lambda tx: tx.get("bad")) is None
    # group commit: a burst of 302 operations did not take 302 commits
    assert ledger.commits < 302


async def test_transition_is_a_compare_and_set(ledger: Ledger) -> None:
    await ledger.call(lambda tx: tx.insert(_record("j1")))
    first = ledger.submit(
        lambda tx: tx.transition("j1", JobState.PRINTING, expect=JobState.RECEIVED)
    )
    second = ledger.submit(
        lambda tx: tx.transition("j1", JobState.CANCELLED, expect=JobState.RECEIVED)
    )
    assert (await first, await second) == (True, False)
    job = await ledger.call(lambda tx: tx.get("j1"))
    assert job is not None and job.state is JobState.PRINTING


async def test_ledger_survives_reopen_and_prunes_only_old_ended_jobs(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILE
    old = time.time() - 3 * 24 * 3600
    async with Ledger(path) as ledger:
        await ledger.call(
            lambda tx: tx.insert(_record("old-done", JobState.PRINTED, updated_at=old))
        )
        await ledger.call(lambda tx: tx.insert(_record("old-waiting", updated_at=old)))
        await ledger.call(lambda tx: tx.insert(_record("new-done", JobState.PRINTED)))
        await ledger.call(lambda tx: tx.reply("x", TOPIC, b"x", b"{}"))
    async with Ledger(path) as ledger:
        removed = await ledger.call(lambda tx: tx.prune(time.time() - 48 * 3600))
        counts = await ledger.call(lambda tx: tx.counts())
        outbox = await ledger.call(lambda tx: tx.outbox())
    assert removed == 1
    assert counts == {JobState.RECEIVED: 1, JobState.PRINTED: 1}
    assert [e.job_id for e in outbox] == ["x"]
    with sqlite3.connect(path) as conn:  # a plain SQLite file anyone can inspect
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (2,)


# --- outbox --------------------------------------------------------------------------------


async def test_outbox_publishes_in_order_keeps_unacknowledged_and_resends_next_session(
    ledger: Ledger,
) -> None:
    outbox = Outbox(ledger, window=4)
    for i in range(10):
        await ledger.call(lambda tx, i=i: tx.reply(f"j{i}", TOPIC, b"c", f"{i}".encode()))
    assert len(outbox) == 10
    sent: list[bytes] = []

    async def flaky(entry: OutboxEntry) -> None:
        sent.append(entry.payload)
        if entry.payload in (b"3", b"7"):
            raise ConnectionError("no PUBACK")  # the session broke before the PUBACK

    pump = asyncio.create_task(outbox.pump(flaky))
    assert not await outbox.drain(0.3)
    pump.cancel()
    await asyncio.gather(pump, return_exceptions=True)
    assert sent == [str(i).encode() for i in range(10)]
    assert len(outbox) == 2

    resent: list[bytes] = []

    async def ok(entry: OutboxEntry) -> None:
        resent.append(entry.payload)

    pump = asyncio.create_task(outbox.pump(ok))
    await ledger.call(lambda tx: tx.reply("j10", TOPIC, b"c", b"10"))  # produced mid-session
    assert await outbox.drain(2)
    pump.cancel()
    await asyncio.gather(pump, return_exceptions=True)
    await outbox.close()
    assert resent == [b"3", b"7", b"10"]
    assert await ledger.call(lambda tx: tx.outbox()) == []


async def test_acknowledged_replies_are_forgotten_without_a_commit_of_their_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / LEDGER_FILE

    def stored() -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    async def ok(entry: OutboxEntry) -> None:
        pass

    async with Ledger(path) as ledger:
        outbox = Outbox(ledger)
        pump = asyncio.create_task(outbox.pump(ok))
        await ledger.call(lambda tx: tx.reply("j1", TOPIC, b"c", b"1"))
        assert await outbox.drain(2)
        assert stored() == 1
        # The next transaction takes the deletion along: one commit for both.
        commits = ledger.commits
        await ledger.call(lambda tx: tx.insert(_record("j2")))
        assert (ledger.commits, stored()) == (commits + 1, 0)
        # With no transaction coming, the deletion goes on its own after FLUSH_DELAY_S.
        await ledger.call(lambda tx: tx.reply("j3", TOPIC, b"c", b"3"))
        assert await outbox.drain(2)
        await eventually_async(lambda: stored() == 0, timeout=FLUSH_DELAY_S + 0.3)
        # At a stop, the last deletions reach the file.
        await ledger.call(lambda tx: tx.reply("j4", TOPIC, b"c", b"4"))
        assert await outbox.drain(2)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await outbox.close()
        assert stored() == 0
        await ledger.call(lambda tx: tx.reply("j5", TOPIC, b"c", b"5"))
        pump = asyncio.create_task(outbox.pump(ok))
        assert await outbox.drain(2)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    assert stored() == 0


async def test_outbox_load_takes_over_undelivered_replies(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILE
    async with Ledger(path) as ledger:
        for i in range(3):
            await ledger.call(lambda tx, i=i: tx.reply(f"j{i}", TOPIC, None, f"{i}".encode()))
    async with Ledger(path) as ledger:
        outbox = Outbox(ledger)
        assert await outbox.load() == 3
        assert len(outbox) == 3


async def test_ledgers_sharing_one_writer_keep_their_own_files_jobs_and_outboxes(
    tmp_path: Path,
) -> None:
    """Many agents in one process (the simulation): one writer thread, a ledger file each."""
    async with Writer(name="ledger") as writer:
        ledgers = [
            Ledger(tmp_path / f"a{i}" / LEDGER_FILE, sync="normal", writer=writer) for i in range(3)
        ]
        heard: list[list[str | None]] = [[], [], []]
        for i, ledger in enumerate(ledgers):
            ledger.on_outbox(lambda entries, i=i: heard[i].extend(e.job_id for e in entries))
            await ledger.__aenter__()
        before = writer_threads()

        def admit(tx: Tx, job_id: str) -> None:
            tx.insert(_record(job_id))
            tx.reply(job_id, TOPIC, b"c", b"{}")

        # One loop turn: one batch on the thread, one transaction per ledger.
        await asyncio.gather(
            *(
                ledger.call(functools.partial(admit, job_id=f"j{i}"))
                for i, ledger in enumerate(ledgers)
            )
        )
        names = await asyncio.gather(
            *(ledger.call(lambda tx: threading.current_thread().name) for ledger in ledgers)
        )
        assert set(names) == {"ledger"} and writer_threads() == before == 1
        assert heard == [["j0"], ["j1"], ["j2"]]
        assert [ledger.commits for ledger in ledgers] == [2, 2, 2]
        await ledgers[0].__aexit__(None, None, None)  # one agent stops, the others go on
        assert await ledgers[1].call(lambda tx: tx.get("j1")) is not None
        await ledgers[1].__aexit__(None, None, None)
    await ledgers[2].__aexit__(None, None, None)  # after the shared writer: nothing left to do
    for i in range(3):
        with sqlite3.connect(tmp_path / f"a{i}" / LEDGER_FILE) as conn:
            assert conn.execute("SELECT job_id FROM jobs").fetchall() == [(f"j{i}",)]


def writer_threads() -> int:
    return sum(t.name == "ledger" for t in threading.enumerate())


# --- jobs ----------------------------------------------------------------------------------


class _Harness:
    def __init__(self, ledger: Ledger, directory: Path) -> None:
        self.ledger = ledger
        self.printer = VirtualPrinter("P1", directory)
        self.jobs = Jobs(ledger, {"P1": PrinterSlot(self.printer)}, branch_id="b1", agent_id="a1")
        self.outbox = Outbox(ledger)
        #: Every reply the ledger committed, in order, replaced ones included.
        self.produced: list[OutboxEntry] = []

        def heard(entries: list[OutboxEntry]) -> None:
            self.produced.extend(entries)
            self.outbox.add(entries)

        ledger.on_outbox(heard)

    async def submit(self, intake: JobRequest | CancelRequest | Refusal) -> Admission:
        admission = await self.jobs.submit(intake)
        self.jobs.admitted(admission)
        return admission

    async def replies(self) -> list[tuple[str | None, str]]:
        """Every reply committed so far, in order (replaced ones included)."""
        await self.ledger.call(lambda tx: None)
        return [(e.job_id, json.loads(e.payload)["stage"]) for e in self.produced]

    async def unsent(self) -> list[tuple[str | None, str]]:
        """The replies the outbox table still holds (nothing is published here)."""
        entries = await self.ledger.call(lambda tx: tx.outbox())
        return [(e.job_id, json.loads(e.payload)["stage"]) for e in entries]

    async def final(self, job_id: str) -> Done | Failed:
        await self.ledger.call(lambda tx: None)
        finals = [
            r
            for e in self.produced
            if e.job_id == job_id and isinstance(r := decode_reply(e.payload), Done | Failed)
        ]
        assert len(finals) >= 1, f"no final reply for {job_id}"
        return finals[-1]

    async def work(self, jobs: Jobs | None = None) -> None:
        """Run the printer worker until its queue is empty."""
        jobs = jobs or self.jobs
        slot = jobs.printers["P1"]
        worker = asyncio.create_task(jobs.run_printer(slot))
        with contextlib.suppress(AssertionError):  # callers check what was printed
            await eventually_async(lambda: not (slot.waiting or slot.busy), interval=0.01)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


def _job(job_id: str, deadline: float | None = None) -> JobRequest:
    return JobRequest(
        job_id, "printer.test", "P1", b'{"printer":"P1"}', TOPIC, job_id.encode(), deadline
    )


async def test_a_job_delivered_twice_prints_once_and_the_second_answer_is_replayed(
    ledger: Ledger, tmp_path: Path
) -> None:
    h = _Harness(ledger, tmp_path / "p1")
    assert (await h.submit(_job("j1"))).queue is not None
    assert (await h.submit(_job("j1"))).queue is None  # still waiting: accepted again
    assert h.jobs.queue_depth == 1
    await h.work()
    assert h.jobs.queue_depth == 0
    assert (await h.submit(_job("j1"))).queue is None
    assert await h.replies() == [
        ("j1", "accepted"),
        ("j1", "accepted"),
        ("j1", "printing"),
        ("j1", "done"),
        ("j1", "done"),
    ]
    # the final replaced the progress replies before they were sent; the replay is a final
    assert await h.unsent() == [("j1", "done"), ("j1", "done")]
    assert h.outbox.folded == 3
    entries = await ledger.call(lambda tx: tx.outbox())
    first, replay = (decode_reply(e.payload) for e in entries)
    assert isinstance(first, Done) and isinstance(replay, Done)
    assert first.result is not None and replay.result is not None
    assert (first.result.replayed, replay.result.replayed) == (False, True)
    assert h.printer.journal() == ["j1"]


async def test_a_retry_through_another_reply_topic_gets_the_later_replies(
    ledger: Ledger, tmp_path: Path
) -> None:
    h = _Harness(ledger, tmp_path / "p1")
    other = "pm/v1/b1/reply/other-instance"
    await h.submit(_job("j1"))
    await h.submit(dataclasses.replace(_job("j1"), reply_to=other))  # waiting: retargeted
    await h.submit(_job("j2"))
    await h.work()
    stages = [(e.job_id, e.topic, json.loads(e.payload)["stage"]) for e in h.produced]
    assert stages == [
        ("j1", TOPIC, "accepted"),
        ("j1", other, "accepted"),
        ("j2", TOPIC, "accepted"),
        ("j1", other, "printing"),
        ("j1", other, "done"),
        ("j2", TOPIC, "printing"),
        ("j2", TOPIC, "done"),
    ]
    # each final replaced the progress replies to its own topic; the first asker's accepted
    # stays, as no final goes there
    assert [(e.job_id, e.topic) for e in await ledger.call(lambda tx: tx.outbox())] == [
        ("j1", TOPIC),
        ("j1", other),
        ("j2", TOPIC),
    ]
    # A job that ended keeps its last asker for replays; a new retry gets the stored final.
    await h.submit(_job("j1"))
    last = (await ledger.call(lambda tx: tx.outbox()))[-1]
    assert (last.topic, json.loads(last.payload)["stage"]) == (TOPIC, "done")


async def test_restart_mid_print_is_outcome_unknown_and_waiting_jobs_print_once(
    ledger: Ledger, tmp_path: Path
) -> None:
    h = _Harness(ledger, tmp_path / "p1")
    for job_id in ("mid", "next", "late"):
        await h.submit(_job(job_id, deadline=time.time() + (0.2 if job_id == "late" else 60)))
    # what a kill -9 leaves behind: "mid" marked printing, the others received
    await ledger.call(lambda tx: tx.transition("mid", JobState.PRINTING, expect=JobState.RECEIVED))
    await asyncio.sleep(0.3)  # "late" passes its deadline while the agent is down
    after = Jobs(ledger, {"P1": PrinterSlot(h.printer)}, branch_id="b1", agent_id="a1")
    counts = await after.recover()
    assert counts == {"outcome_unknown": 1, "expired": 1, "failed": 0, "resumed": 1}
    # the broker redelivers "next" (never acknowledged) on top of the ledger resuming it
    admission = await after.submit(_job("next"))
    after.admitted(admission)
    assert admission.queue is None and after.queue_depth == 1
    await h.work(after)
    assert h.printer.journal() == ["next"]
    unknown = await h.final("mid")
    assert isinstance(unknown, Failed) and unknown.error.code is ErrorCode.OUTCOME_UNKNOWN
    assert "check the printer before reprinting" in unknown.error.message
    expired = await h.final("late")
    assert isinstance(expired, Failed) and expired.error.code is ErrorCode.EXPIRED
    assert isinstance(await h.final("next"), Done)
    # a redelivery of the unknown job is answered from the ledger, never printed
    assert (await after.submit(_job("mid"))).queue is None
    assert h.printer.journal() == ["next"]


async def test_cancel_wins_against_a_waiting_job_and_conflicts_with_a_printed_one(
    ledger: Ledger, tmp_path: Path
) -> None:
    h = _Harness(ledger, tmp_path / "p1")
    await h.submit(_job("keep"))
    await h.submit(_job("drop"))
    await h.submit(CancelRequest("c1", "drop", TOPIC, b"c1"))
    assert h.jobs.queue_depth == 1
    await h.work()
    await h.submit(CancelRequest("c2", "keep", TOPIC, b"c2"))
    await h.submit(CancelRequest("c3", "nope", TOPIC, b"c3"))
    assert h.printer.journal() == ["keep"]
    cancelled = await h.final("drop")
    assert isinstance(cancelled, Failed) and cancelled.error.code is ErrorCode.CANCELLED
    assert isinstance(await h.final("c1"), Done)
    conflict, ahead = await h.final("c2"), await h.final("c3")
    assert isinstance(conflict, Failed) and conflict.error.code is ErrorCode.CONFLICT
    # cancelling a job that has not arrived yet leaves a tombstone: it never prints
    assert isinstance(ahead, Done)
    await h.submit(_job("nope"))
    await h.work()
    late = await h.final("nope")
    assert isinstance(late, Failed) and late.error.code is ErrorCode.CANCELLED
    assert h.printer.journal() == ["keep"]
    job = await ledger.call(lambda tx: tx.get("drop"))
    assert job is not None and job.state is JobState.CANCELLED


async def test_expired_on_arrival_is_recorded_and_refusals_are_answered(
    ledger: Ledger, tmp_path: Path
) -> None:
    h = _Harness(ledger, tmp_path / "p1")
    assert (await h.submit(_job("old", deadline=time.time() - 1))).queue is None
    await h.submit(Refusal("bad", TOPIC, b"bad", ErrorCode.INVALID_REQUEST, "nope"))
    assert await h.replies() == [("old", "failed"), ("bad", "failed")]
    job = await ledger.call(lambda tx: tx.get("old"))
    assert job is not None and job.state is JobState.EXPIRED
    assert job.error_code == ErrorCode.EXPIRED
    assert h.printer.journal() == []


async def test_printer_refusal_is_a_failed_job_with_the_printers_code(
    ledger: Ledger, tmp_path: Path
) -> None:
    h = _Harness(ledger, tmp_path / "p1")
    (tmp_path / "p1" / "state.json").write_text(json.dumps({"paper": "out"}))
    await h.submit(_job("j1"))
    await h.work()
    final = await h.final("j1")
    assert isinstance(final, Failed) and final.error.code is ErrorCode.PAPER_OUT
    job = await ledger.call(lambda tx: tx.get("j1"))
    assert job is not None and job.state is JobState.FAILED
    stored = decode_reply(job.final_reply or b"")
    assert stored == final


def test_done_reply_round_trips_through_the_ledger_bytes() -> None:
    done = Done(job_id="j", at=1.0, result=PrintResult(printer="P1", bytes=3, duration_ms=1.0))
    assert decode_reply(encode(done)) == done


# --- progress folded into the final ------------------------------------------------------


def _reply(job_id: str, stage: str) -> bytes:
    return json.dumps({"v": 1, "stage": stage, "job_id": job_id, "at": 0.0}).encode()


class _Wire:
    """A publisher that records what goes out; PUBACKs at once unless told to hold them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str | None, str]] = []
        self.hold_acks = False
        self.unacked: list[asyncio.Future[None]] = []

    def publish(self, entry: OutboxEntry) -> asyncio.Future[None]:
        self.sent.append((entry.job_id, json.loads(entry.payload)["stage"]))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.hold_acks:
            self.unacked.append(ack)
        else:
            ack.set_result(None)
        return ack


async def _stop(pump: asyncio.Task[None]) -> None:
    pump.cancel()
    await asyncio.gather(pump, return_exceptions=True)


async def test_a_final_deletes_the_jobs_progress_replies_in_its_own_transaction(
    ledger: Ledger,
) -> None:
    await ledger.call(lambda tx: tx.reply("j1", TOPIC, b"c", _reply("j1", "accepted")))
    await ledger.call(lambda tx: tx.reply("j1", TOPIC, b"c", _reply("j1", "printing")))
    progress = await ledger.call(lambda tx: tx.outbox())
    assert [e.progress for e in progress] == [True, True]
    commits = ledger.commits

    def finish(tx: Tx) -> list[OutboxEntry]:
        tx.reply("j1", "pm/v1/b1/reply/other", b"c", _reply("j1", "done"))  # another asker
        tx.reply("j1", TOPIC, b"c", _reply("j1", "done"))
        return tx.new_outbox

    other, done = await ledger.call(finish)
    assert ledger.commits == commits + 1
    assert other.supersedes == () and done.supersedes == tuple(e.seq for e in progress)
    assert [e.seq for e in await ledger.call(lambda tx: tx.outbox())] == [other.seq, done.seq]

    # a failure keeps the progress it reached, ahead of it
    await ledger.call(lambda tx: tx.reply("j2", TOPIC, b"c", _reply("j2", "accepted")))
    failed = await ledger.call(
        lambda tx: (tx.reply("j2", TOPIC, b"c", _reply("j2", "failed")), tx.new_outbox)[1][-1]
    )
    assert failed.supersedes == ()
    assert [e.job_id for e in await ledger.call(lambda tx: tx.outbox())][-2:] == ["j2", "j2"]


async def test_progress_is_held_and_a_job_that_ends_in_time_is_answered_with_its_final_alone(
    ledger: Ledger,
) -> None:
    outbox, wire = Outbox(ledger, hold=0.3), _Wire()
    pump = asyncio.create_task(outbox.pump(wire.publish))
    for stage in ("accepted", "printing"):
        await ledger.call(lambda tx, stage=stage: tx.reply("j1", TOPIC, b"c", _reply("j1", stage)))
    await ledger.call(lambda tx: tx.reply("j2", TOPIC, b"c", _reply("j2", "failed")))
    await asyncio.sleep(0.05)
    assert wire.sent == [("j2", "failed")]  # another job's reply passes the held ones
    await ledger.call(lambda tx: tx.reply("j1", TOPIC, b"c", _reply("j1", "done")))
    assert await outbox.drain(1)
    await asyncio.sleep(0.4)  # past the hold: nothing else goes out
    assert wire.sent == [("j2", "failed"), ("j1", "done")]
    assert (outbox.folded, outbox.published) == (2, 2)
    await _stop(pump)
    await outbox.close()
    assert await ledger.call(lambda tx: tx.outbox()) == []


async def test_held_progress_goes_out_when_due_in_order_and_waiting_takes_it_along(
    ledger: Ledger,
) -> None:
    outbox, wire = Outbox(ledger, hold=0.1), _Wire()
    pump = asyncio.create_task(outbox.pump(wire.publish))
    await ledger.call(lambda tx: tx.reply("slow", TOPIC, b"c", _reply("slow", "accepted")))
    await ledger.call(lambda tx: tx.reply("slow", TOPIC, b"c", _reply("slow", "printing")))
    await asyncio.sleep(0.25)
    assert wire.sent == [("slow", "accepted"), ("slow", "printing")]  # a slow job shows progress
    await ledger.call(lambda tx: tx.reply("slow", TOPIC, b"c", _reply("slow", "done")))
    await ledger.call(lambda tx: tx.reply("held", TOPIC, b"c", _reply("held", "accepted")))
    await ledger.call(lambda tx: tx.reply("held", TOPIC, b"c", _reply("held", "waiting")))
    await asyncio.sleep(0.02)  # well within the hold: "waiting" went at once, "accepted" first
    assert wire.sent[2:] == [("slow", "done"), ("held", "accepted"), ("held", "waiting")]
    assert outbox.folded == 0
    await _stop(pump)


async def test_a_reply_replaced_in_flight_is_not_sent_again_on_the_next_session(
    ledger: Ledger,
) -> None:
    outbox, wire = Outbox(ledger, hold=0), _Wire()  # hold 0: progress goes out at once
    wire.hold_acks = True
    pump = asyncio.create_task(outbox.pump(wire.publish))
    await ledger.call(lambda tx: tx.reply("j1", TOPIC, b"c", _reply("j1", "accepted")))
    await ledger.call(lambda tx: tx.reply("j1", TOPIC, b"c", _reply("j1", "done")))
    assert wire.sent == [("j1", "accepted"), ("j1", "done")]
    await _stop(pump)  # the session breaks before either PUBACK
    again = _Wire()
    pump = asyncio.create_task(outbox.pump(again.publish))
    assert await outbox.drain(1)
    assert again.sent == [("j1", "done")]
    assert outbox.folded == 0  # it had left: not folded, only not repeated
    await _stop(pump)


async def test_after_a_crash_the_progress_left_in_the_outbox_goes_ahead_of_the_recovered_final(
    tmp_path: Path,
) -> None:
    """A failure folds nothing: the cloud learns how far the job got (it was printing), then
    ``outcome_unknown``."""
    path = tmp_path / LEDGER_FILE
    async with Ledger(path) as ledger:  # what a kill -9 mid-print leaves: nothing sent yet
        await ledger.call(lambda tx: tx.insert(_record("mid", JobState.PRINTING)))
        for stage in ("accepted", "printing"):
            await ledger.call(
                lambda tx, stage=stage: tx.reply("mid", TOPIC, b"mid", _reply("mid", stage))
            )
    async with Ledger(path) as ledger:
        outbox, wire = Outbox(ledger), _Wire()
        assert await outbox.load() == 2
        printer = VirtualPrinter("P1", tmp_path / "p1")
        jobs = Jobs(ledger, {"P1": PrinterSlot(printer)}, branch_id="b1", agent_id="a1")
        assert (await jobs.recover())["outcome_unknown"] == 1
        pump = asyncio.create_task(outbox.pump(wire.publish))
        assert await outbox.drain(1)
        await _stop(pump)
        await outbox.close()
    assert wire.sent == [("mid", "accepted"), ("mid", "printing"), ("mid", "failed")]
    assert printer.journal() == []
