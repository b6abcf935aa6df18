"""The CUPS backend against a real, private cupsd whose raw queue feeds the fake printer.

Skips only where cupsd or pycups cannot run at all (not installed, Windows); a cupsd that is
installed but fails to start is a test failure, with its log in the message.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from agent_config import CupsPrinterConfig
from branch_agent._printers import PrinterError, open_backend
from ops.fake_printer import FakePrinter
from protocol import ErrorCode

if sys.platform == "win32":
    pytest.skip("cupsd does not run on Windows", allow_module_level=True)

from tests._cupsd import PrivateCupsd, free_port

cups = pytest.importorskip(
    "cups", reason="pycups not installed: pip install 'printermaster[cups]' (needs libcups2-dev)"
)
from branch_agent._printers._cups import (  # noqa: E402
    JOB_CANCELED,
    CupsPrinter,
    discover_cups_queues,
    error_from_reasons,
    reading_from_printer_attributes,
)

JOB = b"\x1b@Table 12\n2x Margherita\n" + bytes(range(0x20, 0x7F)) + b"\n\x1dV\x00"


@pytest.fixture
def queue(cupsd: PrivateCupsd, fake_printer: FakePrinter, request: pytest.FixtureRequest) -> str:
    """A raw queue, named after the test, whose device is the fake printer."""
    name = "pm-" + request.node.name.replace("[", "-").replace("]", "")[:60]
    cupsd.add_raw_queue(name, f"socket://127.0.0.1:{fake_printer.port}")
    return name


def job_states(cupsd: PrivateCupsd) -> dict[int, int]:
    conn = cupsd.connection()
    # pycups keys the answer by job-id, so it must be requested too
    jobs: dict[int, Any] = conn.getJobs(
        which_jobs="all", requested_attributes=["job-id", "job-state"]
    )
    return {job: attrs["job-state"] for job, attrs in jobs.items()}


def test_discovers_the_raw_queue(
    cupsd: PrivateCupsd, queue: str, fake_printer: FakePrinter
) -> None:
    found = {q.name: q for q in discover_cups_queues(cupsd.server)}
    assert queue in found
    assert found[queue].device_uri == f"socket://127.0.0.1:{fake_printer.port}"
    assert found[queue].is_raw
    assert found[queue].accepting


def test_prints_through_cups_and_waits_for_completion(
    cupsd: PrivateCupsd, queue: str, fake_printer: FakePrinter, tmp_path: Any
) -> None:
    printer = open_backend(
        CupsPrinterConfig(name="POS-80C", queue=queue, server=cupsd.server, timeout=30), tmp_path
    )
    printer.write(JOB, "job-cups-1")
    # write() returns once CUPS reports the job completed: the bytes are at the printer now.
    assert fake_printer.jobs == [JOB]
    completed = cupsd.connection().getJobs(which_jobs="completed")
    assert len(completed) >= 1


def test_status_of_an_idle_and_a_stopped_queue(cupsd: PrivateCupsd, queue: str) -> None:
    printer = CupsPrinter("POS-80C", queue, server=cupsd.server)
    assert printer.status().online
    cupsd.connection().disablePrinter(queue, reason="paper jam")
    reading = printer.status()
    assert not reading.online
    assert "paper jam" in reading.detail
    with pytest.raises(PrinterError) as caught:
        printer.write(JOB, "job-cups-2")
    assert caught.value.code is ErrorCode.PRINTER_OFFLINE


@pytest.mark.parametrize(
    ("reasons", "code", "paper", "cover_open"),
    [
        (["media-empty-error"], ErrorCode.PAPER_OUT, "out", False),
        (["media-needed"], ErrorCode.PAPER_OUT, "out", False),
        (["cover-open-error"], ErrorCode.COVER_OPEN, "unknown", True),
        (["door-open-report", "media-low-warning"], ErrorCode.COVER_OPEN, "near_end", True),
        (["media-low-warning"], None, "near_end", False),
        (["none"], None, "unknown", False),
    ],
)
def test_printer_state_reasons_map_to_codes(
    reasons: list[str], code: ErrorCode | None, paper: str, cover_open: bool
) -> None:
    attrs = {"printer-state": 3, "printer-state-reasons": reasons}
    reading = reading_from_printer_attributes(attrs)
    assert (reading.paper, reading.cover_open) == (paper, cover_open)
    error = error_from_reasons(reasons, "")
    assert (error.code if error else None) is code


def test_unreachable_printer_times_out_and_the_job_is_cancelled(cupsd: PrivateCupsd) -> None:
    cupsd.add_raw_queue("pm-dead", f"socket://127.0.0.1:{free_port()}")
    printer = CupsPrinter("POS-80C", "pm-dead", server=cupsd.server, timeout=3)
    before = set(job_states(cupsd))
    started = time.monotonic()
    with pytest.raises(PrinterError) as caught:
        printer.write(JOB, "job-cups-3")
    assert time.monotonic() - started < 15
    assert caught.value.code is ErrorCode.PRINTER_OFFLINE
    assert "cancelled" in caught.value.message
    new = {job: state for job, state in job_states(cupsd).items() if job not in before}
    assert list(new.values()) == [JOB_CANCELED]  # it will never print late


def test_missing_queue_is_a_printer_error(cupsd: PrivateCupsd) -> None:
    printer = CupsPrinter("POS-80C", "no-such-queue", server=cupsd.server)
    with pytest.raises(PrinterError) as caught:
        printer.write(JOB, "job-cups-4")
    assert caught.value.code is ErrorCode.PRINTER_ERROR
    assert "no queue" in caught.value.message
    assert not printer.status().online


def test_unreachable_cups_server_is_offline() -> None:
    printer = CupsPrinter("POS-80C", "any", server=f"127.0.0.1:{free_port()}")
    with pytest.raises(PrinterError) as caught:
        printer.write(JOB, "job-cups-5")
    assert caught.value.code is ErrorCode.PRINTER_OFFLINE


def test_missing_pycups_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cups", None)  # fault injection: pycups not installed
    with pytest.raises(PrinterError) as caught:
        CupsPrinter("POS-80C", "any")
    assert "printermaster[cups]" in caught.value.message
