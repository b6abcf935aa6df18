"""DLE EOT request and answer parsing (pure, no printer)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from branch_agent._printers._escpos_status import (
    ErrorCause,
    OfflineCause,
    PrinterStatus,
    RollPaper,
    StatusFormatError,
    StatusQuery,
    is_status_byte,
    parse_report,
    read_status,
    request,
)
from ops.fake_printer import PrinterState
from protocol import ErrorCode

OK = {StatusQuery.PRINTER: 0x12, StatusQuery.OFFLINE_CAUSE: 0x12}
OK |= {StatusQuery.ERROR_CAUSE: 0x12, StatusQuery.ROLL_PAPER: 0x12}


def test_requests_are_dle_eot_n() -> None:
    assert [request(q) for q in StatusQuery] == [
        b"\x10\x04\x01",
        b"\x10\x04\x02",
        b"\x10\x04\x03",
        b"\x10\x04\x04",
    ]


def test_idle_printer_reads_online_with_paper() -> None:
    report = parse_report(OK)
    assert report.reading().online
    assert report.reading().paper == "ok"
    assert report.reading().cover_open is False
    assert report.blocking_error() is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0x12, RollPaper(near_end=False, out=False)),
        (0x1E, RollPaper(near_end=True, out=False)),
        (0x7E, RollPaper(near_end=True, out=True)),
        (0x72, RollPaper(near_end=False, out=True)),
        (0x32, RollPaper(near_end=False, out=True)),  # one paper-end bit is enough
    ],
)
def test_roll_paper_sensor(value: int, expected: RollPaper) -> None:
    assert RollPaper.parse(value) == expected


def test_offline_cause_bits() -> None:
    assert OfflineCause.parse(0x16).cover_open
    assert OfflineCause.parse(0x32).stopped_paper_end
    assert OfflineCause.parse(0x52).error
    assert not OfflineCause.parse(0x12).cover_open


def test_printer_status_and_error_bits() -> None:
    assert PrinterStatus.parse(0x1A).offline
    assert not PrinterStatus.parse(0x12).offline
    assert ErrorCause.parse(0x1A).autocutter
    assert ErrorCause.parse(0x32).unrecoverable
    assert ErrorCause.parse(0x52).auto_recoverable


def test_cover_open_blocks_with_cover_open() -> None:
    report = parse_report(OK | {StatusQuery.PRINTER: 0x1A, StatusQuery.OFFLINE_CAUSE: 0x16})
    error = report.blocking_error()
    assert error is not None and error.code is ErrorCode.COVER_OPEN
    assert report.reading().cover_open is True


def test_paper_out_blocks_with_paper_out() -> None:
    answers = OK | {StatusQuery.PRINTER: 0x1A, StatusQuery.OFFLINE_CAUSE: 0x32}
    report = parse_report(answers | {StatusQuery.ROLL_PAPER: 0x7E})
    error = report.blocking_error()
    assert error is not None and error.code is ErrorCode.PAPER_OUT
    assert report.reading().paper == "out"


def test_near_end_does_not_block() -> None:
    report = parse_report(OK | {StatusQuery.ROLL_PAPER: 0x1E})
    assert report.reading().paper == "near_end"
    assert report.blocking_error() is None


def test_unexplained_offline_is_printer_offline() -> None:
    report = parse_report(OK | {StatusQuery.PRINTER: 0x1A})
    error = report.blocking_error()
    assert error is not None and error.code is ErrorCode.PRINTER_OFFLINE
    assert not report.reading().online


def test_error_cause_is_printer_error() -> None:
    report = parse_report(OK | {StatusQuery.PRINTER: 0x1A, StatusQuery.ERROR_CAUSE: 0x1A})
    error = report.blocking_error()
    assert error is not None and error.code is ErrorCode.PRINTER_ERROR
    assert "autocutter" in error.message


@pytest.mark.parametrize("value", [0x00, 0xFF, 0x13, 0x92, 0x02, 0x10, ord("A")])
def test_bytes_without_fixed_bits_are_rejected(value: int) -> None:
    with pytest.raises(StatusFormatError):
        RollPaper.parse(value)


def test_read_status_asks_each_query_once_in_order() -> None:
    asked: list[bytes] = []

    def exchange(req: bytes) -> int:
        asked.append(req)
        return 0x12

    read_status(exchange)
    assert asked == [request(q) for q in StatusQuery]


@given(st.integers(0, 255))
def test_fixed_bit_check_matches_the_spec(value: int) -> None:
    fixed_ok = (value >> 1) & 1 == 1 and (value >> 4) & 1 == 1
    fixed_ok = fixed_ok and value & 1 == 0 and value >> 7 == 0
    assert is_status_byte(value) == fixed_ok


@given(
    st.booleans(),
    st.sampled_from(["ok", "near_end", "out"]),
    st.booleans(),
)
def test_fake_printer_answers_round_trip(online: bool, paper: str, cover_open: bool) -> None:
    """The fake printer's answers parse back to the state it was given."""
    state = PrinterState(online=online, paper=paper, cover_open=cover_open)  # type: ignore[arg-type]
    report = parse_report({q: state.answer(q)[0] for q in StatusQuery})
    reading = report.reading()
    assert reading.paper == paper
    assert reading.cover_open is cover_open
    assert reading.online is (online or cover_open or paper == "out")
