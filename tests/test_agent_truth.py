"""Truthful outcomes on the agent, under printer trouble: the job lifecycle on a real SQLite
ledger with a real virtual printer, or the fake ESC/POS network printer over loopback (no broker:
replies are read as the ledger commits them to the outbox, every stage the agent reports; on the
wire a final may replace progress replies not sent yet, see tests/test_ledger.py).

* a print job waits (``waiting``) while its printer is offline / out of paper / cover open, and
  prints when the status poll sees the printer ready; test prints fail at once;
* a job never starts after its deadline, even behind a stalled printer; one that started in time
  is written to its end, unless it is still writing its write allowance after the deadline;
* bytes that reached the printer and then an error is ``OUTCOME_UNKNOWN``, never ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from branch_agent._jobs import CancelRequest, JobRequest, Jobs, PrinterSlot
from branch_agent._ledger import JobState, Ledger, OutboxEntry
from branch_agent._printers import NetworkPrinter, PrinterBackend, PrinterError, VirtualPrinter
from branch_agent._printers._base import WRITE_ALLOWANCE, WriteTicket
from ops.fake_printer import FakePrinter
from protocol import ErrorCode

from ._wait import eventually_async
from .test_ledger import TOPIC, _job

RAW = {"type": "raw", "data": "G0BIZWxsbwoKHVZBAA=="}


def print_job(job_id: str, deadline: float | None = None) -> JobRequest:
    params = json.dumps({"printer": "P1", "content": RAW}).encode()
    return JobRequest(job_id, "print.job", "P1", params, TOPIC, job_id.encode(), deadline)


#: Every reply each ledger committed, in order.
_COMMITTED: weakref.WeakKeyDictionary[Ledger, list[OutboxEntry]] = weakref.WeakKeyDictionary()


class Agent:
    """The job side of an agent: jobs, one printer worker and a status poller, as _agent runs
    them."""

    def __init__(
        self,
        ledger: Ledger,
        backend: PrinterBackend,
        poll: float = 0.05,
        write_allowance: float = WRITE_ALLOWANCE,
    ) -> None:
        self.ledger = ledger
        self.backend = backend
        self.slot = PrinterSlot(backend, write_allowance=write_allowance)
        self.jobs = Jobs(ledger, {"P1": self.slot}, branch_id="b1", agent_id="a1")
        self._poll = poll
        self._tasks: list[asyncio.Task[None]] = []
        if ledger not in _COMMITTED:  # one record per ledger, across agent restarts
            _COMMITTED[ledger] = []
            ledger.on_outbox(_COMMITTED[ledger].extend)
        self._committed = _COMMITTED[ledger]

    async def __aenter__(self) -> Agent:
        await self.jobs.recover()
        self._tasks = [
            asyncio.create_task(self.jobs.run_printer(self.slot)),
            asyncio.create_task(self._poller()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _poller(self) -> None:
        while True:
            self.slot.reading = await asyncio.to_thread(self.backend.status)
            await asyncio.sleep(self._poll)

    async def submit(self, intake: JobRequest | CancelRequest) -> None:
        self.jobs.admitted(await self.jobs.submit(intake))

    async def replies(self, job_id: str) -> list[dict[str, Any]]:
        await self.ledger.call(lambda tx: None)  # every reply committed so far has been heard
        return [json.loads(e.payload) for e in self._committed if e.job_id == job_id]

    async def stages(self, job_id: str) -> list[str]:
        return [r["stage"] for r in await self.replies(job_id)]

    async def until(
        self, job_id: str, check: Callable[[list[str]], bool], within: float = 10
    ) -> list[dict[str, Any]]:

        async def replied() -> tuple[list[dict[str, Any]]]:
            replies = await self.replies(job_id)
            assert check([r["stage"] for r in replies]), [r["stage"] for r in replies]
            return (replies,)  # truthy even when the check is met by no replies

        (found,) = await eventually_async(replied, timeout=within)
        return found

    async def state(self, job_id: str) -> JobState:
        job = await self.ledger.call(lambda tx: tx.get(job_id))
        assert job is not None
        return job.state


def final(stages: list[str]) -> bool:
    return "done" in stages or "failed" in stages


@pytest.fixture
async def virtual(tmp_path: Path) -> AsyncIterator[VirtualPrinter]:
    yield VirtualPrinter("P1", tmp_path / "p1")


def set_state(printer: VirtualPrinter, **state: object) -> None:
    (printer.directory / "state.json").write_text(json.dumps(state))


# --- hold until ready -------------------------------------------------------------------------


async def test_a_print_job_waits_for_paper_and_prints_when_it_is_back(
    ledger: Ledger,
    virtual: VirtualPrinter,
) -> None:
    set_state(virtual, paper="out")
    async with Agent(ledger, virtual) as agent:
        await agent.submit(print_job("j1", deadline=time.time() + 60))
        replies = await agent.until("j1", lambda s: "waiting" in s)
        assert [r["stage"] for r in replies] == ["accepted", "waiting"]
        error = replies[1]["error"]
        assert (error["code"], error["retryable"]) == ("PAPER_OUT", True)
        assert await agent.state("j1") is JobState.WAITING
        assert agent.jobs.queue_depth == 1
        await asyncio.sleep(0.3)  # not eventually: nothing reaches the printer while waiting
        assert virtual.journal() == []

        set_state(virtual, cover_open=True)  # the condition changes: heard again
        replies = await agent.until("j1", lambda s: s.count("waiting") == 2)
        assert replies[-1]["error"]["code"] == "COVER_OPEN"
        assert virtual.journal() == []

        set_state(virtual)  # ready again
        replies = await agent.until("j1", final)
        assert [r["stage"] for r in replies] == [
            "accepted",
            "waiting",
            "waiting",
            "printing",
            "done",
        ]
        assert virtual.journal() == ["j1"]
        assert agent.jobs.queue_depth == 0


async def test_a_waiting_job_expires_at_its_deadline_and_never_prints(
    ledger: Ledger,
    virtual: VirtualPrinter,
) -> None:
    set_state(virtual, online=False)
    async with Agent(ledger, virtual) as agent:
        await agent.submit(print_job("j1", deadline=time.time() + 0.8))
        replies = await agent.until("j1", final)
        assert [r["stage"] for r in replies] == ["accepted", "waiting", "failed"]
        assert replies[1]["error"]["code"] == "PRINTER_OFFLINE"
        assert replies[2]["error"]["code"] == "EXPIRED"
        assert await agent.state("j1") is JobState.EXPIRED
        set_state(virtual)
        await asyncio.sleep(0.3)  # not eventually: the ended job does not print once ready
    assert virtual.journal() == []


async def test_jobs_behind_a_waiting_one_wait_in_order_and_a_test_print_fails_at_once(
    ledger: Ledger,
    virtual: VirtualPrinter,
) -> None:
    set_state(virtual, paper="out")
    async with Agent(ledger, virtual) as agent:
        for job_id in ("j1", "j2"):
            await agent.submit(print_job(job_id, deadline=time.time() + 60))
        await agent.until("j2", lambda s: "waiting" in s)
        await agent.submit(_job("test-page"))  # printer.test: never held
        replies = await agent.until("test-page", final)
        assert [r["stage"] for r in replies] == ["accepted", "failed"]
        assert replies[-1]["error"]["code"] == "PAPER_OUT"
        set_state(virtual)
        for job_id in ("j1", "j2"):
            await agent.until(job_id, final)
        assert virtual.journal() == ["j1", "j2"]


async def test_cancel_of_a_waiting_job_and_a_redelivery_answered_from_the_ledger(
    ledger: Ledger,
    virtual: VirtualPrinter,
) -> None:
    set_state(virtual, paper="out")
    async with Agent(ledger, virtual) as agent:
        await agent.submit(print_job("j1", deadline=time.time() + 60))
        await agent.until("j1", lambda s: "waiting" in s)
        await agent.submit(print_job("j1", deadline=time.time() + 60))  # redelivered
        replies = await agent.until("j1", lambda s: len(s) == 4)
        assert [r["stage"] for r in replies] == ["accepted", "waiting", "accepted", "waiting"]
        assert replies[-1]["error"] == replies[1]["error"]
        await agent.submit(CancelRequest("c1", "j1", TOPIC, b"c1"))
        assert await agent.stages("c1") == ["accepted", "done"]
        replies = await agent.until("j1", final)
        assert replies[-1]["error"]["code"] == "CANCELLED"
        assert agent.jobs.queue_depth == 0
        set_state(virtual)
        await asyncio.sleep(0.3)  # not eventually: the ended job does not print once ready
    assert virtual.journal() == []


async def test_a_waiting_job_survives_a_restart_and_prints_once_ready(
    ledger: Ledger,
    virtual: VirtualPrinter,
) -> None:
    set_state(virtual, paper="out")
    async with Agent(ledger, virtual) as agent:
        await agent.submit(print_job("j1", deadline=time.time() + 60))
        await agent.until("j1", lambda s: "waiting" in s)
    async with Agent(ledger, virtual) as again:  # the agent restarted
        assert await again.state("j1") is JobState.WAITING
        await again.submit(print_job("j1", deadline=time.time() + 60))  # redelivered, too
        await again.until("j1", lambda s: len(s) >= 4)
        set_state(virtual)
        replies = await again.until("j1", final)
        assert replies[-1]["stage"] == "done"
        # the condition was heard before the restart: not announced again without a change
        assert [r["stage"] for r in replies] == [
            "accepted",
            "waiting",
            "accepted",
            "waiting",
            "printing",
            "done",
        ]
    assert virtual.journal() == ["j1"]


# --- never late, never a false failure ----------------------------------------------------------


async def test_a_job_due_before_a_stalled_printer_recovers_never_prints(
    ledger: Ledger,
    fake_printer: FakePrinter,
) -> None:
    """The issue's case: the printer stalls (a status poll is stuck on it), the job's deadline
    comes first. It must end without ``printing`` and no byte of it may reach the printer."""
    backend = NetworkPrinter("P1", "127.0.0.1", fake_printer.port, timeout=10)
    async with Agent(ledger, backend, poll=0.2) as agent:
        await agent.until("none", lambda s: True)
        fake_printer.stall_for(4.0)
        await asyncio.sleep(0.3)  # a status poll is now stuck on the stalled printer
        await agent.submit(_job("test-page", deadline=time.time() + 1.5))  # printer.test
        await agent.submit(print_job("ticket", deadline=time.time() + 2.0))
        test_page = await agent.until("test-page", final)
        ticket = await agent.until("ticket", final)
        assert "printing" not in [r["stage"] for r in test_page + ticket]
        assert ticket[-1]["error"]["code"] == "EXPIRED"
        assert test_page[-1]["error"]["code"] in ("EXPIRED", "PRINTER_OFFLINE")
        await eventually_async(lambda: not fake_printer.stalled, timeout=10, interval=0.1)
        await asyncio.sleep(1.5)  # not eventually: a late write would land within this window
    assert fake_printer.jobs == []
    backend.close()


@pytest.mark.parametrize("behaviour", ["jam_after_data", "vanish_mid_job"])
async def test_bytes_on_paper_then_a_printer_failure_is_outcome_unknown(
    ledger: Ledger,
    fake_printer: FakePrinter,
    behaviour: str,
) -> None:
    fake_printer.behaviour = behaviour  # type: ignore[assignment]
    fake_printer.vanish_after = 5
    backend = NetworkPrinter("P1", "127.0.0.1", fake_printer.port, timeout=1)
    async with Agent(ledger, backend) as agent:
        await agent.submit(print_job("j1"))
        replies = await agent.until("j1", final)
    backend.close()
    assert [r["stage"] for r in replies] == ["accepted", "printing", "failed"]
    assert replies[-1]["error"]["code"] == "OUTCOME_UNKNOWN"
    assert replies[-1]["error"]["retryable"] is False
    assert await agent.state("j1") is JobState.OUTCOME_UNKNOWN
    assert fake_printer.jobs  # some or all of the ticket reached the printer


async def test_a_print_job_on_an_unreachable_network_printer_waits_then_prints(
    ledger: Ledger,
) -> None:
    with contextlib.closing(__import__("socket").socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = NetworkPrinter("P1", "127.0.0.1", port, timeout=1)
    async with Agent(ledger, backend) as agent:
        await agent.submit(print_job("j1", deadline=time.time() + 60))
        replies = await agent.until("j1", lambda s: "waiting" in s)
        assert replies[-1]["error"]["code"] == "PRINTER_OFFLINE"
        with FakePrinter(port=port) as printer:  # the printer is switched on
            replies = await agent.until("j1", final)
            assert replies[-1]["stage"] == "done"
            assert len(printer.wait_for_jobs(1)) == 1
        backend.close()


class _InMemory(PrinterBackend):
    """A backend written on the event loop (blocking = False), as the simulated agents use."""

    kind = "virtual"
    blocking = False

    def __init__(self) -> None:
        super().__init__("P1")
        self.written: list[str] = []

    def write(self, data: bytes, job_id: str) -> None:
        self.written.append(job_id)


async def test_a_backend_on_the_loop_passes_the_same_point_of_no_return(
    ledger: Ledger,
) -> None:
    backend = _InMemory()
    async with Agent(ledger, backend) as agent:
        await agent.submit(print_job("j1"))
        assert [r["stage"] for r in await agent.until("j1", final)] == [
            "accepted",
            "printing",
            "done",
        ]
        await agent.submit(CancelRequest("c1", "j1", TOPIC, b"c1"))  # too late: it printed
        assert (await agent.until("c1", final))[-1]["error"]["code"] == "CONFLICT"
    assert backend.written == ["j1"]


async def test_a_print_job_waits_out_a_network_printers_paper_change(
    ledger: Ledger,
    fake_printer: FakePrinter,
) -> None:
    """The chaos run's "paper out, then back": the job waits, then prints once."""
    backend = NetworkPrinter("P1", "127.0.0.1", fake_printer.port, timeout=2)
    fake_printer.paper_out_for(1.5)
    async with Agent(ledger, backend, poll=0.1) as agent:
        await agent.submit(print_job("j1", deadline=time.time() + 30))
        replies = await agent.until("j1", final)
    backend.close()
    assert [r["stage"] for r in replies] == ["accepted", "waiting", "printing", "done"]
    assert replies[1]["error"]["code"] == "PAPER_OUT"
    assert len(fake_printer.wait_for_jobs(1)) == 1


@pytest.mark.parametrize("kind", ["print.job", "printer.test"])
async def test_a_job_that_started_before_its_deadline_is_written_to_its_end(
    ledger: Ledger,
    virtual: VirtualPrinter,
    kind: str,
) -> None:
    """The deadline is the latest start: a slow printer (1.5 s per job) that took a job due in
    0.5 s prints it (a test print's deadline is only the API's accept_timeout)."""
    set_state(virtual, delay_s=1.5)
    async with Agent(ledger, virtual) as agent:
        make = print_job if kind == "print.job" else _job
        await agent.submit(make("j1", deadline=time.time() + 0.5))
        replies = await agent.until("j1", final)
    assert [r["stage"] for r in replies] == ["accepted", "printing", "done"]
    assert await agent.state("j1") is JobState.PRINTED
    assert virtual.journal() == ["j1"]


async def test_a_write_still_running_at_its_write_limit_is_stopped_and_reported(
    ledger: Ledger,
    virtual: VirtualPrinter,
) -> None:
    """The virtual printer takes 3 s per job; the job is due in 0.5 s and may write 0.5 s past
    it: it started, but was stopped before its bytes landed, so the truth is EXPIRED with
    nothing on paper."""
    set_state(virtual, delay_s=3)
    async with Agent(ledger, virtual, write_allowance=0.5) as agent:
        started = time.monotonic()
        await agent.submit(print_job("j1", deadline=time.time() + 0.5))
        replies = await agent.until("j1", final)
        assert time.monotonic() - started < 2.5  # the write limit, not the printer's 3 s
    assert [r["stage"] for r in replies] == ["accepted", "printing", "failed"]
    assert replies[-1]["error"]["code"] == "EXPIRED"
    assert await agent.state("j1") is JobState.EXPIRED
    assert virtual.journal() == []


class _Deaf(PrinterBackend):
    """A backend that ignores deadlines: it sends a byte, then blocks until aborted."""

    kind = "virtual"

    def __init__(self) -> None:
        super().__init__("P1")
        import threading

        self.aborted = threading.Event()

    def write(self, data: bytes, job_id: str) -> None:
        raise AssertionError("print_job is used")

    def print_job(self, data: bytes, ticket: WriteTicket) -> None:
        ticket.start()
        ticket.sent = 1
        if not self.aborted.wait(30):
            return
        raise PrinterError(ErrorCode.PRINTER_ERROR, "connection cut")

    def abort(self) -> None:
        self.aborted.set()


async def test_a_backend_that_ignores_the_deadline_is_cut_off_and_reported_unknown(
    ledger: Ledger,
) -> None:
    backend = _Deaf()
    async with Agent(ledger, backend, write_allowance=0.5) as agent:
        await agent.submit(print_job("j1", deadline=time.time() + 0.5))
        replies = await agent.until("j1", final, within=5)
    assert backend.aborted.is_set()
    assert [r["stage"] for r in replies] == ["accepted", "printing", "failed"]
    assert replies[-1]["error"]["code"] == "OUTCOME_UNKNOWN"
    assert "after 1 bytes were sent" in replies[-1]["error"]["message"]


class _StuckBeforeStart(PrinterBackend):
    """A backend that hangs while it takes the printer (before its point of no return) and
    ignores the deadline there: only ``abort`` frees it."""

    kind = "virtual"

    def __init__(self) -> None:
        super().__init__("P1")
        import threading

        self.aborted = threading.Event()
        self.started = False

    def write(self, data: bytes, job_id: str) -> None:
        raise AssertionError("print_job is used")

    def print_job(self, data: bytes, ticket: WriteTicket) -> None:
        self.aborted.wait(30)
        ticket.start()  # past the deadline: refused
        self.started = True

    def abort(self) -> None:
        self.aborted.set()


async def test_a_backend_stuck_before_the_start_is_cut_off_at_the_deadline(
    ledger: Ledger,
) -> None:
    """The write allowance is for a job that started: one that has not by its deadline never
    will, so its backend is stopped then, not 30 s later, and the job ends EXPIRED."""
    backend = _StuckBeforeStart()
    async with Agent(ledger, backend) as agent:
        await agent.submit(print_job("j1", deadline=time.time() + 0.5))
        replies = await agent.until("j1", final, within=10)
    assert backend.aborted.is_set() and not backend.started
    assert [r["stage"] for r in replies] == ["accepted", "failed"]
    assert replies[-1]["error"]["code"] == "EXPIRED"
