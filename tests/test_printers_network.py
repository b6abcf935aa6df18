"""The network backend against the fake ESC/POS printer (real TCP on loopback)."""

from __future__ import annotations

import socket
import time

import pytest

from branch_agent._printers import PrinterError, open_backend
from branch_agent._printers._config import NetworkPrinterConfig
from branch_agent._printers._network import NetworkPrinter
from ops.fake_printer import FakePrinter
from protocol import ErrorCode

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
    time.sleep(0.2)  # anything sent would have arrived by now
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


def test_stall_while_sending_a_job_is_a_printer_error(fake_printer: FakePrinter) -> None:
    """A printer that answers status but stops reading mid-job (paper jam, full buffer)."""
    big = b"x" * (64 << 20)  # far beyond the socket buffers on both sides
    fake_printer.behaviour = "stall_on_data"
    printer = backend(fake_printer, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(PrinterError) as caught:
        printer.write(big, "job-6")
    assert caught.value.code is ErrorCode.PRINTER_ERROR
    assert "partly printed" in caught.value.message
    assert time.monotonic() - started < 5


def test_dropped_connection_on_job_data_is_a_typed_error(fake_printer: FakePrinter) -> None:
    fake_printer.behaviour = "drop_on_data"
    with pytest.raises(PrinterError) as caught:
        backend(fake_printer).write(JOB, "job-7")
    assert caught.value.code is ErrorCode.PRINTER_ERROR
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
    assert [f.code for f in failures] == [ErrorCode.PRINTER_ERROR]
