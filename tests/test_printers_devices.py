"""Serial, device-node, USB and Windows backends, on what this machine really has.

Serial and device-node printers are driven through a pseudo-terminal whose other side answers
like a printer; USB and Windows are checked for how they fail where there is no such printer.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_config import (
    FilePrinterConfig,
    SerialPrinterConfig,
    UsbPrinterConfig,
    Win32PrinterConfig,
)
from branch_agent._printers import PrinterError, open_backend
from branch_agent._printers._escpos_device import EscposDeviceBackend
from branch_agent._printers._win32 import reading_from_spooler_status
from protocol import ErrorCode

from ._wait import eventually

JOB = b"\x1b@Order 42\n1x Pad Thai\n\x1dV\x00"

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")


@pytest.fixture
def pty_printer() -> Iterator[object]:
    if sys.platform == "win32":
        pytest.skip("pseudo-terminals are POSIX")
    from tests._pty_printer import PtyPrinter

    with PtyPrinter() as printer:
        yield printer


def serial_backend(path: str, tmp_path: Path, timeout: float = 1.0) -> EscposDeviceBackend:
    pytest.importorskip("serial", reason="pyserial not installed (pip install pyserial)")
    config = SerialPrinterConfig(name="POS-58", device=path, dsrdtr=False, timeout=timeout)
    backend = open_backend(config, tmp_path)
    assert isinstance(backend, EscposDeviceBackend)
    return backend


def file_backend(path: str, tmp_path: Path, timeout: float = 1.0) -> EscposDeviceBackend:
    backend = open_backend(FilePrinterConfig(name="POS-58", device=path, timeout=timeout), tmp_path)
    assert isinstance(backend, EscposDeviceBackend)
    return backend


BACKENDS = [pytest.param(serial_backend, id="serial"), pytest.param(file_backend, id="file")]


def settle(printer, count: int) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(AssertionError):  # the callers compare the bytes themselves
        eventually(lambda: len(printer.data) >= count, timeout=5)


@posix_only
@pytest.mark.parametrize("make", BACKENDS)
def test_job_bytes_arrive_unchanged(make, pty_printer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make(pty_printer.path, tmp_path).write(JOB, "job-1")
    settle(pty_printer, len(JOB))
    assert bytes(pty_printer.data) == JOB
    assert pty_printer.queries == [1, 2, 3, 4, 1]


@posix_only
@pytest.mark.parametrize("make", BACKENDS)
@pytest.mark.parametrize(
    ("field", "value", "code"),
    [("paper", "out", ErrorCode.PAPER_OUT), ("cover_open", True, ErrorCode.COVER_OPEN)],
)
def test_blocked_printer_gets_nothing(make, pty_printer, tmp_path, field, value, code) -> None:  # type: ignore[no-untyped-def]
    setattr(pty_printer.state, field, value)
    backend = make(pty_printer.path, tmp_path)
    with pytest.raises(PrinterError) as caught:
        backend.write(JOB, "job-2")
    assert caught.value.code is code
    time.sleep(0.2)  # not eventually: anything sent would have arrived within this window
    assert bytes(pty_printer.data) == b""
    reading = backend.status()
    assert (reading.paper == "out") is (field == "paper")
    assert reading.cover_open is (field == "cover_open")


@posix_only
@pytest.mark.parametrize("make", BACKENDS)
def test_silent_printer_is_offline_in_bounded_time(make, pty_printer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pty_printer.silent = True
    backend = make(pty_printer.path, tmp_path, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(PrinterError) as caught:
        backend.write(JOB, "job-3")
    assert caught.value.code is ErrorCode.PRINTER_OFFLINE
    assert time.monotonic() - started < 3
    assert bytes(pty_printer.data) == b""
    assert not backend.status().online


@posix_only
@pytest.mark.parametrize("make", BACKENDS)
def test_missing_device_is_offline(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backend = make(str(tmp_path / "no-such-tty"), tmp_path)
    with pytest.raises(PrinterError) as caught:
        backend.write(JOB, "job-4")
    assert caught.value.code is ErrorCode.PRINTER_OFFLINE
    assert not backend.status().online


def test_file_backend_on_a_plain_file_prints_without_status(tmp_path: Path) -> None:
    target = tmp_path / "spool.prn"
    target.touch()  # a node that is missing is an offline printer, never created
    backend = file_backend(str(target), tmp_path)
    backend.write(JOB, "job-5")
    assert target.read_bytes() == JOB
    reading = backend.status()
    assert reading.online and reading.paper == "unknown"


def test_usb_printer_that_is_not_there_is_offline(tmp_path: Path) -> None:
    pytest.importorskip("usb", reason="pyusb not installed (pip install pyusb)")
    config = UsbPrinterConfig(name="POS-USB", vendor_id=0xFFFE, product_id=0xFFFD, timeout=0.5)
    backend = open_backend(config, tmp_path)
    with pytest.raises(PrinterError) as caught:
        backend.write(JOB, "job-6")
    assert caught.value.code is ErrorCode.PRINTER_OFFLINE
    assert "usb fffe:fffd" in caught.value.message
    assert not backend.status().online


@pytest.mark.skipif(sys.platform == "win32", reason="checks the error off Windows")
def test_win32_backend_off_windows_names_the_extra(tmp_path: Path) -> None:
    with pytest.raises(PrinterError) as caught:
        open_backend(Win32PrinterConfig(name="POS-WIN"), tmp_path)
    assert "printermaster[windows]" in caught.value.message


@pytest.mark.parametrize(
    ("status", "online", "paper", "cover_open", "code"),
    [
        (0, True, "unknown", False, None),
        (0x10, True, "out", False, ErrorCode.PAPER_OUT),
        (0x400000, True, "unknown", True, ErrorCode.COVER_OPEN),
        (0x80, False, "unknown", False, ErrorCode.PRINTER_OFFLINE),
        (0x2, False, "unknown", False, ErrorCode.PRINTER_OFFLINE),
    ],
)
def test_spooler_status_bits(status, online, paper, cover_open, code) -> None:  # type: ignore[no-untyped-def]
    reading = reading_from_spooler_status(status)
    assert (reading.online, reading.paper, reading.cover_open) == (online, paper, cover_open)
    error = reading.blocking_error()
    assert (error.code if error else None) is code
