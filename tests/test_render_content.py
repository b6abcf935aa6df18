"""Rendering print-job content to ESC/POS: a golden receipt, and the bytes of each block."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from branch_agent._render import _render_test_page, render_content, render_test_page
from protocol import Document, decode_content, validate_content
from tests.content_strategies import image_file
from tests.escpos_dump import disassemble

DATA = Path(__file__).parent / "data"
INIT = b"\x1b@"


def render(*blocks: dict[str, Any], width: int = 48) -> bytes:
    return render_content(validate_content({"type": "document", "width": width, "blocks": blocks}))


def test_sample_receipt_matches_the_golden_bytes() -> None:
    content = decode_content((DATA / "sample_receipt.json").read_bytes())
    assert render_content(content) == (DATA / "sample_receipt.bin").read_bytes()


def test_golden_bytes_are_all_known_commands() -> None:
    lines = list(disassemble((DATA / "sample_receipt.bin").read_bytes()))
    assert not [line for line in lines if line.startswith("??")]
    assert lines[0] == "ESC @ initialize: []"
    assert "GS v 0 raster image: mode 0, 96x32 dots" in lines
    assert "GS k barcode A type 2: b'4006381333931'" in lines
    assert "GS k barcode B type 73: b'{BORD-1042{{7}'" in lines
    assert lines[-2:] == ["GS V cut: partial", "ESC p drawer kick (pin, on, off): [0, 50, 50]"]


def test_copies_repeat_the_whole_receipt() -> None:
    content = decode_content((DATA / "sample_receipt.json").read_bytes())
    one = render_content(content)
    assert render_content(content, copies=3) == one * 3
    for copies in (0, 11):
        with pytest.raises(ValueError, match="copies"):
            render_content(content, copies=copies)


def test_raw_passes_through() -> None:
    data = bytes(range(256))
    assert render_content(validate_content({"type": "raw", "data": data})) == data
    assert render_content(validate_content({"type": "raw", "data": data}), copies=2) == data * 2


def test_text_styles() -> None:
    out = render(
        {
            "type": "text",
            "text": "Hi",
            "align": "right",
            "bold": True,
            "underline": 2,
            "width": 3,
            "height": 8,
            "invert": True,
        }
    )
    # GS ! (width-1)<<4 | (height-1), ESC E, ESC - , ESC a, GS B, code page, text, LF
    assert out == INIT + b"\x1d!\x27\x1bE\x01\x1b-\x02\x1ba\x02\x1dB\x01\x1bt\x00Hi\n"


def test_every_text_block_resets_the_styles_of_the_one_before() -> None:
    out = render({"type": "text", "text": "A", "bold": True}, {"type": "text", "text": "B"})
    assert out.endswith(b"A\n\x1d!\x00\x1bE\x00\x1b-\x00\x1ba\x00\x1dB\x00B\n")


def test_separator_fills_the_document_width() -> None:
    assert render({"type": "separator", "char": "*"}, width=32).endswith(b"*" * 32 + b"\n")
    assert render({"type": "separator"}, width=42).endswith(b"\x00" + b"-" * 42 + b"\n")


def test_qr_is_native() -> None:
    out = render({"type": "qr", "data": "pm:42", "size": 8, "error_correction": "Q"})
    assert out == INIT + (
        b"\x1ba\x01"
        b"\x1d(k\x04\x001A2\x00"  # model 2
        b"\x1d(k\x03\x001C\x08"  # module size 8
        b"\x1d(k\x03\x001E2"  # error correction Q
        b"\x1d(k\x08\x001P0pm:42"  # store the data
        b"\x1d(k\x03\x001Q0"  # print
    )


def test_barcode() -> None:
    out = render(
        {
            "type": "barcode",
            "symbology": "EAN8",
            "data": "96385074",
            "height": 100,
            "width": 4,
            "text_position": "both",
            "align": "left",
        }
    )
    assert out == INIT + b"\x1ba\x00\x1dhd\x1dw\x04\x1df\x00\x1dH\x03\x1dk\x0396385074\x00"


def test_code128_selects_code_set_b_and_escapes_braces() -> None:
    out = render({"type": "barcode", "symbology": "CODE128", "data": "{x}"})
    assert out.endswith(b"\x1dkI\x06{B{{x}")


def test_image_is_a_raster_bit_image() -> None:
    out = render({"type": "image", "data": image_file(10, 3, "1", "PNG", 7), "align": "right"})
    assert out[:13] == INIT + b"\x1ba\x02" + b"\x1dv0\x00\x02\x00\x03\x00"
    assert len(out) == 13 + 2 * 3  # 10 dots round up to 2 bytes a row, 3 rows


def test_image_of_the_full_paper_width() -> None:
    out = render({"type": "image", "data": image_file(576, 10, "L", "PNG", 8)})
    assert b"\x1dv0\x00\x48\x00\x0a\x00" in out  # 72 bytes = 576 dots wide, 10 high


def test_feed_cut_drawer() -> None:
    assert render({"type": "feed", "lines": 3}) == INIT + b"\x1bd\x03"
    assert render({"type": "cut"}) == INIT + b"\x1bd\x06\x1dV\x00"
    assert render({"type": "cut", "mode": "partial"}) == INIT + b"\x1bd\x06\x1dV\x01"
    assert render({"type": "drawer"}) == INIT + b"\x1bp\x00\x32\x32"
    assert render({"type": "drawer", "pin": 5}) == INIT + b"\x1bp\x01\x32\x32"


def test_rendering_keeps_stdout_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    render(
        {"type": "image", "data": image_file(8, 8, "RGB", "PNG", 9)},
        {"type": "barcode", "symbology": "ITF", "data": "1234"},
    )
    assert capsys.readouterr() == ("", "")


def test_rendering_does_not_change_the_shared_printer_profile() -> None:
    from escpos.printer import Dummy

    render({"type": "image", "data": image_file(8, 8, "RGB", "PNG", 9)})
    assert Dummy().profile.profile_data["media"]["width"]["pixels"] == "Unknown"


def test_test_page_still_renders() -> None:
    out = render_test_page(branch_id="b1", agent_id="a1", printer="POS-80C", job_id="j1")
    assert b"PrinterMaster" in out
    assert b"\x1d(k" in out  # native QR
    assert out.endswith(b"\x1dV\x00")


def test_document_is_immutable() -> None:
    content = validate_content({"type": "document", "blocks": [{"type": "cut"}]})
    assert isinstance(content, Document)
    with pytest.raises(AttributeError):
        content.width = 32  # type: ignore[misc]


@pytest.mark.parametrize("job_id", ["j", "job-1.2_3", "x" * 64, "0190d2c4e6f87a3b9c1d2e3f4a5b6c7d"])
def test_test_page_from_the_cached_template_is_the_full_render(job_id: str) -> None:
    now = dt.datetime(2026, 11, 27, 5, 6, 7, tzinfo=dt.UTC)
    for branch_id in ("b1", "branch-" + job_id[:20]):
        page = render_test_page(
            branch_id=branch_id, agent_id="a1", printer="POS-80C", job_id=job_id, now=now
        )
        full = _render_test_page(branch_id, "a1", "POS-80C", job_id, "2026-11-27 05:06:07 UTC")
        assert page == full
        assert job_id.encode() in page and b"~" not in page and b"^" not in page
