"""The network backend against the fake ESC/POS printer (real TCP on loopback)."""

from __future__ import annotations

import socket
import time

import pytest

from agent_config import NetworkPrinterConfig
from branch_agent._printers import PrinterError, open_backend
from branch_agent._printers._network import NetworkPrinter
from ops.fake_printer import FakePrinter
from protocol import ErrorCode

from ._wait import eventually

JOB = b"\x1b@Hello, kitchen\n" + bytes(range(256)).replace(b"\x10", b"") + b"\x1dV\x00"


def backend(printer: FakePrinter, timeout: float = 2.0) -> NetworkPrinter:
    return NetworkPrinter("POS-80C", "127.0.0.1", printer.port, timeout=timeout)


def test_job_bytes_arrive_unchanged(fake_printer: FakePrinter) -> None:
    backend(fake_printer).write(JOB, "job-1")
    assert fake_printer.wait_for_jobs(1) == [JOB]
    # four status reads before the job, one receipt confirmation after it
    assert fake_printer.queries == [1, 2, 3, 4, 1]


def test_large_job_arrives_unchanged(fake_printer: FakePrinter) -> None:
    big = (b"A" * 1000 + b"\n") * 2000
    backend(fake_printer).write(big, "job-big")
    assert fake_printer.wait_for_jobs(1) == [big]


def test_open_backend_builds_a_network_printer(fake_printer: FakePrinter, tmp_path) -> None:
    config = NetworkPrinterConfig(name="POS-80C", host="127.0.0.1", port=fake_printer.port)
    printer = open_backend(config, tmp_path)
    printer.write(JOB, "job-2")
    assert fake_printer.wait_for_jobs(1) == [JOB]


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ({"paper": "out"}, ErrorCode.PAPER_OUT),
        ({"cover_open": True}, ErrorCode.COVER_OPEN),
        ({"online": False}, ErrorCode.PRINTER_OFFLINE),
        ({"error_bits": 0x08}, ErrorCode.PRINTER_ERROR),
    ],
)
def test_blocked_printer_refuses_and_nothing_is_sent(
    fake_printer: FakePrinter, state: dict[str, object], code: ErrorCode
) -> None:
    for key, value in state.items():
        setattr(fake_printer.state, key, value)
    with pytest.raises(PrinterError) as caught:
        backend(fake_printer).write(JOB, "job-3")
    assert caught.value.code is code
    time.sleep(0.2)  # not eventually: anything sent would have arrived by now
    assert fake_printer.jobs == []
    assert fake_printer.queries == [1, 2, 3, 4]


def test_status_reports_paper_out_and_cover_open(fake_printer: FakePrinter) -> None:
    printer = backend(fake_printer)
    reading = printer.status()
    assert (reading.online, reading.paper, reading.cover_open) == (True, "ok", False)
    fake_printer.state.paper = "out"
    assert printer.status().paper == "out"
    fake_printer.state.paper = "near_end"
    fake_printer.state.cover_open = True
    reading = printer.status()
    assert (reading.paper, reading.cover_open) == ("near_end", True)
    assert fake_printer.jobs == []


def test_refused_connection_is_offline() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    printer = NetworkPrinter("POS-80C", "127.0.0.1", port, timeout=2)
    with pytest.raises(PrinterError) as caught:
        printer.write(JOB, "job-4")
    assert caught.value.code is ErrorCode.PRINTER_OFFLINE
    reading = printer.status()
    assert not reading.online and "cannot connect" in reading.detail


def test_stalled_printer_fails_in_bounded_time(fake_printer: FakePrinter) -> None:
    fake_printer.behaviour = "stall"
    printer = backend(fake_printer, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(PrinterError) as caught:
        printer.write(JOB, "job-5")
    assert caught.value.code is ErrorCode.PRINTER_OFFLINE
    assert time.monotonic() - started < 3
    assert not printer.status().online
    assert fake_printer.jobs == []


def test_stall_while_sending_a_job_is_outcome_unknown(fake_printer: FakePrinter) -> None:
    """A printer that answers status but stops reading mid-job (paper jam, full buffer)."""
    big = b"x" * (64 << 20)  # far beyond the socket buffers on both sides
    fake_printer.behaviour = "stall_on_data"
    printer = backend(fake_printer, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(PrinterError) as caught:
        printer.write(big, "job-6")
    assert caught.value.code is ErrorCode.OUTCOME_UNKNOWN
    assert "may be on paper" in caught.value.message
    assert time.monotonic() - started < 5


def test_dropped_connection_on_job_data_is_outcome_unknown(fake_printer: FakePrinter) -> None:
    fake_printer.behaviour = "drop_on_data"
    with pytest.raises(PrinterError) as caught:
        backend(fake_printer).write(JOB, "job-7")
    assert caught.value.code is ErrorCode.OUTCOME_UNKNOWN
    assert "connection lost" in caught.value.message


def test_dropped_connection_before_status_is_offline(fake_printer: FakePrinter) -> None:
    fake_printer.behaviour = "drop"
    with pytest.raises(PrinterError) as caught:
        backend(fake_printer).write(JOB, "job-8")
    assert caught.value.code is ErrorCode.PRINTER_OFFLINE
    assert fake_printer.jobs == []


def test_printer_without_dle_eot_support_can_print_blind(fake_printer: FakePrinter) -> None:
    fake_printer.state.paper = "out"  # ignored: we do not ask
    printer = NetworkPrinter("POS-80C", "127.0.0.1", fake_printer.port, status_query=False)
    printer.write(JOB, "job-9")
    assert fake_printer.wait_for_jobs(1) == [JOB]
    assert fake_printer.queries == []


def test_status_during_a_stuck_job_answers_from_the_last_reading(
    fake_printer: FakePrinter,
) -> None:
    """The agent polls status from another thread; a job in progress must not block it."""
    import threading

    printer = backend(fake_printer, timeout=3)
    assert printer.status().paper == "ok"
    fake_printer.behaviour = "stall_on_data"
    failures: list[PrinterError] = []

    def print_job() -> None:
        try:
            printer.write(b"x" * (64 << 20), "job-10")
        except PrinterError as exc:
            failures.append(exc)

    worker = threading.Thread(target=print_job)
    worker.start()
    time.sleep(0.3)  # the job holds the connection now
    fake_printer.state.paper = "out"
    started = time.monotonic()
    reading = printer.status()
    assert time.monotonic() - started < 1.5
    assert reading.paper == "ok"  # the last reading, not a second connection mid-job
    worker.join(timeout=10)
    assert [f.code for f in failures] == [ErrorCode.OUTCOME_UNKNOWN]


# --- bytes that reached the printer are never reported as a clean failure ---------------------


def test_printer_that_jams_after_reading_every_byte_is_outcome_unknown(
    fake_printer: FakePrinter,
) -> None:
    """The ticket is on paper (the printer read it all), then it never confirms: not FAILED."""
    fake_printer.behaviour = "jam_after_data"
    with pytest.raises(PrinterError) as caught:
        backend(fake_printer, timeout=0.5).write(JOB, "job-jam")
    assert fake_printer.jobs == [JOB]
    assert caught.value.code is ErrorCode.OUTCOME_UNKNOWN
    assert f"after all {len(JOB)} bytes" in caught.value.message
    assert not caught.value.info().retryable


def test_printer_that_vanishes_mid_job_is_outcome_unknown(fake_printer: FakePrinter) -> None:
    fake_printer.behaviour = "vanish_mid_job"
    fake_printer.vanish_after = 1000
    big = b"y" * (4 << 20)
    with pytest.raises(PrinterError) as caught:
        backend(fake_printer, timeout=2).write(big, "job-vanish")
    assert caught.value.code is ErrorCode.OUTCOME_UNKNOWN
    assert fake_printer.jobs == [b"y" * 1000]


# --- status polls are short and give way to jobs ----------------------------------------------


def test_status_poll_of_a_hung_printer_gives_up_within_its_status_timeout(
    fake_printer: FakePrinter,
) -> None:
    """A hung printer (connects, never answers) costs a poll about a second, not ``timeout``."""
    fake_printer.behaviour = "stall"
    printer = backend(fake_printer, timeout=10)
    started = time.monotonic()
    reading = printer.status()
    assert time.monotonic() - started < 5  # status_timeout is 1 s; the job timeout 10 s
    assert not reading.online and "status request" in reading.detail


def test_a_write_does_not_wait_behind_a_poll_stuck_on_the_printer(
    fake_printer: FakePrinter,
) -> None:
    """The poll holds the printer (its status timeout is long here); a job interrupts it, and
    the poll answers from its last reading instead of reporting the printer offline."""
    import threading

    printer = NetworkPrinter(
        "POS-80C", "127.0.0.1", fake_printer.port, timeout=10, status_timeout=8
    )
    assert printer.status().online
    fake_printer.stall_for(1.0)
    readings: list[object] = []
    poll = threading.Thread(target=lambda: readings.append(printer.status()))
    poll.start()
    time.sleep(0.3)  # the poll is now waiting for the stalled printer's answer
    started = time.monotonic()
    printer.write(JOB, "job-preempt")
    took = time.monotonic() - started
    poll.join(timeout=10)
    assert fake_printer.wait_for_jobs(1) == [JOB]
    assert took < 5, f"the job waited {took:.1f}s behind the poll (its timeout is 8 s)"
    assert len(readings) == 1 and readings[0].online  # type: ignore[attr-defined]


# --- deadlines: never start late, never write past the deadline plus the write allowance ---


def test_a_job_never_starts_after_its_deadline_behind_a_stalled_printer(
    fake_printer: FakePrinter,
) -> None:
    """The issue's stalled printer: it stops answering for 3 s; a job due in 1 s must end
    EXPIRED before its point of no return, and no byte of it may reach the printer later."""
    from branch_agent._printers._base import WriteTicket

    printer = backend(fake_printer, timeout=10)
    assert printer.status().online
    fake_printer.stall_for(3.0)
    starts: list[str] = []
    ticket = WriteTicket("job-late", time.time() + 1.0, start=lambda: starts.append("start"))
    started = time.monotonic()
    with pytest.raises(PrinterError) as caught:
        printer.print_job(JOB, ticket)
    assert time.monotonic() - started < 2.5
    assert caught.value.code in (ErrorCode.EXPIRED, ErrorCode.PRINTER_OFFLINE)
    assert starts == [] and not ticket.started and ticket.sent == 0
    time.sleep(3.5)  # not eventually: the printer recovers; anything sent would arrive now
    assert fake_printer.jobs == []


def test_a_write_still_running_at_its_write_limit_is_stopped(fake_printer: FakePrinter) -> None:
    """Started before its deadline (1 s), the job may write 1 s past it, then it is cut."""
    from branch_agent._printers._base import WriteTicket

    fake_printer.behaviour = "stall_on_data"  # takes some bytes, then jams
    printer = backend(fake_printer, timeout=30)
    ticket = WriteTicket("job-cut", time.time() + 1.0, allowance=1.0)
    started = time.monotonic()
    with pytest.raises(PrinterError) as caught:
        printer.print_job(b"z" * (64 << 20), ticket)
    took = time.monotonic() - started
    assert took >= 1.9  # not cut at the deadline: the write allowance after it
    assert took < 6  # the write limit, not the 30 s timeout
    assert ticket.started and ticket.sent > 0
    assert caught.value.code is ErrorCode.OUTCOME_UNKNOWN
    assert "deadline" in caught.value.message


# --- one kept-alive connection ----------------------------------------------------------------


def test_polls_and_jobs_share_one_kept_alive_connection_closed_when_idle(
    fake_printer: FakePrinter,
) -> None:
    printer = NetworkPrinter("POS-80C", "127.0.0.1", fake_printer.port, idle_close=0.5)
    for i in range(30):
        assert printer.status().online
        if i % 10 == 0:
            printer.write(JOB, f"job-keep-{i}")
    assert fake_printer.wait_for_jobs(3) == [JOB, JOB, JOB]
    assert fake_printer.accepted == 1  # was one connection per poll and per job: 33
    eventually(
        lambda: not fake_printer.open_connections,
        timeout=5,
        interval=0.05,
        what="the idle connection closed",
    )
    assert printer.status().online  # and a new one is opened when needed
    assert fake_printer.accepted == 2


def test_a_kept_connection_the_printer_closed_is_replaced_without_an_error(
    fake_printer: FakePrinter,
) -> None:
    printer = backend(fake_printer)
    assert printer.status().online
    with fake_printer._lock:
        sockets = list(fake_printer._sockets)
    for sock in sockets:  # the printer drops idle connections (many do)
        sock.close()
    time.sleep(0.2)
    assert printer.status().online
    printer.write(JOB, "job-after-drop")
    assert fake_printer.wait_for_jobs(1) == [JOB]


def test_fake_printer_process_takes_faults_from_its_control_file(tmp_path) -> None:
    """A chaos run drives a fake printer in another process through ``--control``."""
    import json
    import subprocess
    import sys

    from broker import free_port

    port = free_port()
    control = tmp_path / "control.json"
    proc = subprocess.Popen(
        [sys.executable, "ops/fake_printer.py", "--port", str(port), "--control", str(control)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None and b"listening" in proc.stdout.readline()
        printer = NetworkPrinter("POS-80C", "127.0.0.1", port, timeout=2)
        assert printer.status().paper == "ok"
        control.write_text(json.dumps({"paper_out_for": 1.0}))
        seen: list[str] = []

        def out_then_ok() -> bool:
            paper = printer.status().paper
            if not seen or seen[-1] != paper:
                seen.append(paper)
            return seen[-2:] == ["out", "ok"]

        # out for a while, then back by itself
        eventually(out_then_ok, timeout=5, interval=0.05, what=lambda: seen)
        printer.close()
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        assert proc.stdout is not None
        proc.stdout.close()
