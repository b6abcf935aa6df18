"""Print-job content: what is accepted, what is refused, and that refusals name the field."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from PIL import Image

import protocol
from protocol import (
    MAX_CONTENT_BYTES,
    MAX_IMAGE_BYTES,
    MAX_RAW_BYTES,
    BarcodeBlock,
    Copies,
    DecodeError,
    Document,
    RawContent,
    TextBlock,
    decode_content,
    gtin_check_digit,
    validate_content,
)
from tests.content_strategies import image_file

SAMPLE = Path(__file__).parent / "data" / "sample_receipt.json"


def doc(*blocks: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": "document", "blocks": list(blocks), **fields}


def refused(obj: Any) -> DecodeError:
    """The error for ``obj``, checked to be the same from a Python object and from JSON bytes."""
    with pytest.raises(DecodeError) as from_obj:
        validate_content(obj)
    with pytest.raises(DecodeError) as from_json:
        decode_content(msgspec.json.encode(obj))
    assert from_obj.value.path == from_json.value.path
    assert f"`{from_obj.value.path}`" in from_obj.value.message
    return from_obj.value


def test_sample_receipt_decodes() -> None:
    content = decode_content(SAMPLE.read_bytes())
    assert isinstance(content, Document)
    assert content.width == 48
    assert len(content.blocks) == 16
    assert validate_content(json.loads(SAMPLE.read_text())) == content


def test_defaults() -> None:
    content = validate_content(doc({"type": "text", "text": "hi"}, {"type": "separator"}))
    assert content == Document(blocks=(TextBlock(text="hi"), protocol.SeparatorBlock()), width=48)


@pytest.mark.parametrize(
    ("obj", "path", "words"),
    [
        (doc({"type": "text", "text": "x", "algin": "center"}), "$.blocks[0]", "algin"),
        (doc({"type": "text", "text": "x", "width": 9}), "$.blocks[0].width", "<= 8"),
        (doc({"type": "text", "text": "x", "bold": "yes"}), "$.blocks[0].bold", "bool"),
        (doc({"type": "text", "text": "x", "align": "middle"}), "$.blocks[0].align", "middle"),
        (doc({"type": "text", "text": "a\x1b@"}), "$.blocks[0].text", "regex"),
        (doc({"type": "text"}), "$.blocks[0]", "text"),
        (doc({"type": "separator", "char": "--"}), "$.blocks[0].char", "regex"),
        (doc({"type": "separator", "char": ""}), "$.blocks[0].char", "regex"),
        (doc({"type": "qr", "data": ""}), "$.blocks[0].data", "length"),
        (doc({"type": "qr", "data": "x", "size": 17}), "$.blocks[0].size", "<= 16"),
        (
            doc({"type": "qr", "data": "x", "error_correction": "X"}),
            "$.blocks[0].error_correction",
            "X",
        ),
        (doc({"type": "feed", "lines": 0}), "$.blocks[0].lines", ">= 1"),
        (doc({"type": "cut", "mode": "half"}), "$.blocks[0].mode", "half"),
        (doc({"type": "drawer", "pin": 3}), "$.blocks[0].pin", "3"),
        (doc({"type": "beep"}), "$.blocks[0].type", "beep"),
        (doc({"text": "no type"}), "$.blocks[0]", "type"),
        (doc(), "$.blocks", "length >= 1"),
        (doc({"type": "cut"}, width=12), "$.width", ">= 16"),
        (doc({"type": "cut"}, copies=2), "$", "copies"),
        ({"type": "raw", "data": ""}, "$.data", "length >= 1"),
        ({"type": "raw", "data": "!!"}, "$.data", "base64"),
        ({"type": "pdf", "data": "AA=="}, "$.type", "pdf"),
        ([1, 2], "$", "object"),
    ],
)
def test_refusals_name_the_field(obj: Any, path: str, words: str) -> None:
    error = refused(obj)
    assert error.path == path
    assert words in error.message


def test_more_blocks_than_allowed() -> None:
    error = refused(doc(*[{"type": "feed"}] * (protocol.MAX_BLOCKS + 1)))
    assert error.path == "$.blocks"


@pytest.mark.parametrize(
    ("digits", "check"), [("400638133393", 1), ("9638507", 4), ("03600029145", 2)]
)
def test_gtin_check_digit(digits: str, check: int) -> None:
    assert gtin_check_digit(digits) == check


@pytest.mark.parametrize(
    ("symbology", "data"),
    [
        ("EAN13", "4006381333931"),
        ("EAN8", "96385074"),
        ("UPC-A", "036000291452"),
        ("ITF", "00012345678905"),
        ("CODE39", "ORDER-1042 $%+./"),
        ("CODE128", "Order {1042} ~ok"),
    ],
)
def test_good_barcodes(symbology: str, data: str) -> None:
    content = validate_content(doc({"type": "barcode", "symbology": symbology, "data": data}))
    assert isinstance(content, Document)
    assert content.blocks[0] == BarcodeBlock(symbology=symbology, data=data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("symbology", "data", "words"),
    [
        ("EAN13", "4006381333932", "check digit is 2, expected 1"),
        ("EAN13", "400638133393", "13 digits"),
        # full-width digits pass str.isdigit() but are no barcode digits
        ("EAN13", "".join(chr(0xFF10 + int(d)) for d in "4006381333931"), "13 digits"),
        ("EAN8", "9638507", "8 digits"),
        ("UPC-A", "036000291453", "expected 2"),
        ("ITF", "123", "even number"),
        ("CODE39", "order", "capitals"),
        ("CODE128", "naïve", "ASCII"),
    ],
)
def test_bad_barcodes(symbology: str, data: str, words: str) -> None:
    error = refused(
        doc({"type": "feed"}, {"type": "barcode", "symbology": symbology, "data": data})
    )
    assert error.path == "$.blocks[1].data"
    assert words in error.message


def test_qr_capacity_counts_utf8_bytes() -> None:
    assert validate_content(doc({"type": "qr", "data": "x" * 2331}))
    assert validate_content(doc({"type": "qr", "data": "x" * 2953, "error_correction": "L"}))
    error = refused(doc({"type": "qr", "data": "x" * 2332}))
    assert error.path == "$.blocks[0].data"
    assert "2331" in error.message
    # 1000 two-byte characters fit at L (2953 bytes) but not at H (1273 bytes)
    assert validate_content(doc({"type": "qr", "data": "é" * 1000, "error_correction": "L"}))
    assert refused(doc({"type": "qr", "data": "é" * 1000, "error_correction": "H"}))


def test_image_limits() -> None:
    buf = io.BytesIO()
    Image.new("1", (576, 2000), 1).save(buf, "PNG")
    biggest = buf.getvalue()
    assert len(biggest) < MAX_IMAGE_BYTES
    assert validate_content(doc({"type": "image", "data": biggest}))
    for width, height in [(577, 1), (1, 2001)]:
        error = refused(doc({"type": "image", "data": image_file(width, height, "1", "PNG", 1)}))
        assert error.path == "$.blocks[0].data"
        assert f"{width}x{height} px" in error.message


def test_image_file_size_limit() -> None:
    noise = image_file(576, 300, "L", "PNG", seed=2)  # random grey pixels do not compress
    assert len(noise) > MAX_IMAGE_BYTES
    error = refused(doc({"type": "image", "data": noise}))
    assert error.path == "$.blocks[0].data"
    assert f"length <= {MAX_IMAGE_BYTES}" in error.message


@pytest.mark.parametrize(
    "data",
    [
        image_file(32, 32, "RGB", "PNG", 3)[:400],  # truncated in the pixel data
        image_file(8, 8, "RGB", "BMP", 3),  # not PNG or JPEG
        image_file(8, 8, "P", "GIF", 3),
        b"\x89PNG\r\n\x1a\n",
        b"not an image",
    ],
)
def test_unreadable_images(data: bytes) -> None:
    error = refused(doc({"type": "image", "data": data}))
    assert error.path == "$.blocks[0].data"
    assert "PNG or JPEG" in error.message


def test_image_as_base64_or_bytes() -> None:
    data = image_file(8, 8, "RGB", "JPEG", 4)
    as_bytes = validate_content(doc({"type": "image", "data": data}))
    as_text = validate_content(doc({"type": "image", "data": base64.b64encode(data).decode()}))
    assert as_bytes == as_text


def test_raw_limits() -> None:
    assert validate_content({"type": "raw", "data": b"\x1b@" * (MAX_RAW_BYTES // 2)})
    error = refused({"type": "raw", "data": b"x" * (MAX_RAW_BYTES + 1)})
    assert error.path == "$.data"


def test_total_size_limit() -> None:
    image = image_file(576, 220, "L", "PNG", seed=5)
    assert MAX_IMAGE_BYTES - 10_000 < len(image) <= MAX_IMAGE_BYTES
    two = doc({"type": "image", "data": image}, {"type": "image", "data": image})
    assert len(msgspec.json.encode(two)) > MAX_CONTENT_BYTES
    error = refused(two)
    assert error.path == "$"
    assert "byte limit" in error.message


def test_text_may_hold_tabs_and_newlines_but_no_other_controls() -> None:
    assert validate_content(doc({"type": "text", "text": "a\tb\nc"}))
    for control in ["\r", "\x00", "\x07", "\x1b", "\x1d", "\x7f", "\x85", "\x9b"]:
        assert refused(doc({"type": "text", "text": control})).path == "$.blocks[0].text"


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(DecodeError) as text:
        validate_content(doc({"type": "text", "text": "\ud800"}))
    assert text.value.path == "$.blocks[0].text"
    with pytest.raises(DecodeError) as qr:
        validate_content(doc({"type": "qr", "data": "\udfff"}))
    assert qr.value.path == "$.blocks[0].data"
    with pytest.raises(DecodeError):
        decode_content(b'{"type":"document","blocks":[{"type":"text","text":"\\ud800"}]}')


def test_structs_built_in_python_are_checked_again() -> None:
    built = Document(blocks=(TextBlock(text="x", width=9),))  # Meta limits do not run here
    error = refused(built)
    assert error.path == "$.blocks[0].width"
    assert validate_content(RawContent(data=b"\x1b@")) == RawContent(data=b"\x1b@")


def test_semantic_checks_also_guard_construction() -> None:
    with pytest.raises(ValueError, match="check digit"):
        BarcodeBlock(symbology="EAN13", data="4006381333932")


def test_copies_is_a_field_type_for_print_params() -> None:
    class Params(msgspec.Struct, kw_only=True, frozen=True):
        content: protocol.Content
        copies: Copies = 1

    good = b'{"content":{"type":"raw","data":"G0A="},"copies":10}'
    assert msgspec.json.decode(good, type=Params).copies == 10
    for copies in (0, 11):
        with pytest.raises(msgspec.ValidationError, match=r"\$\.copies"):
            msgspec.json.decode(good.replace(b"10", str(copies).encode()), type=Params)


def test_codec_errors_carry_the_path_too() -> None:
    with pytest.raises(DecodeError) as caught:
        protocol.decode_presence(b'{"state":"asleep","session":1,"branch_id":"b","agent_id":"a"}')
    assert caught.value.path == "$.state"
    assert caught.value.message.startswith("malformed presence: ")
    with pytest.raises(DecodeError) as caught:
        protocol.decode_presence(b"[")
    assert caught.value.path == "$"
