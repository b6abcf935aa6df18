"""Hypothesis strategies for print-job content: valid documents, and invalid ones with the path
of the field that makes them invalid."""

from __future__ import annotations

import io
import random
from typing import Any

import msgspec
from hypothesis import strategies as st
from PIL import Image

from protocol import (
    MAX_BARCODE_CHARS,
    BarcodeBlock,
    CutBlock,
    Document,
    DrawerBlock,
    FeedBlock,
    ImageBlock,
    QrBlock,
    RawContent,
    SeparatorBlock,
    TextBlock,
    gtin_check_digit,
)

# Category Cc is exactly the C0 controls, DEL and the C1 controls; Cs the surrogates.
printable = st.characters(exclude_categories=["Cs", "Cc"])
text_chars = st.one_of(printable, st.sampled_from("\t\n"))
aligns: st.SearchStrategy[Any] = st.sampled_from(["left", "center", "right"])
digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


def _gtin(length: int) -> st.SearchStrategy[str]:
    body = st.text(alphabet="0123456789", min_size=length - 1, max_size=length - 1)
    return body.map(lambda b: b + str(gtin_check_digit(b)))


BARCODE_DATA: dict[str, st.SearchStrategy[str]] = {
    "EAN13": _gtin(13),
    "EAN8": _gtin(8),
    "UPC-A": _gtin(12),
    "ITF": st.lists(
        st.text(alphabet="0123456789", min_size=2, max_size=2),
        min_size=1,
        max_size=MAX_BARCODE_CHARS // 2,
    ).map("".join),
    "CODE39": st.text(
        alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%+-./",
        min_size=1,
        max_size=MAX_BARCODE_CHARS,
    ),
    "CODE128": st.text(
        alphabet=[chr(c) for c in range(0x20, 0x7F)], min_size=1, max_size=MAX_BARCODE_CHARS
    ),
}


def image_file(width: int, height: int, mode: str, fmt: str, seed: int) -> bytes:
    """An image file of random pixels."""
    channels = {"1": 1, "L": 1, "P": 1, "RGB": 3, "RGBA": 4}[mode]
    raw = random.Random(seed).randbytes(width * height * channels)
    image = Image.frombytes("L" if mode == "1" else mode, (width, height), raw)
    if mode == "1":
        image = image.convert("1")
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


@st.composite
def image_data(draw: st.DrawFn, max_side: int = 48) -> bytes:
    fmt = draw(st.sampled_from(["PNG", "JPEG"]))
    modes = ["1", "L", "P", "RGB", "RGBA"] if fmt == "PNG" else ["L", "RGB"]
    return image_file(
        draw(st.integers(1, max_side)),
        draw(st.integers(1, max_side)),
        draw(st.sampled_from(modes)),
        fmt,
        draw(st.integers(0, 2**32)),
    )


text_blocks = st.builds(
    TextBlock,
    text=st.text(alphabet=text_chars, max_size=120),
    align=aligns,
    bold=st.booleans(),
    underline=st.integers(0, 2),
    width=st.integers(1, 8),
    height=st.integers(1, 8),
    invert=st.booleans(),
)
separator_blocks = st.builds(SeparatorBlock, char=printable)
qr_blocks = st.builds(
    QrBlock,
    data=st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=300),
    size=st.integers(1, 16),
    error_correction=st.sampled_from("LMQH"),
    align=aligns,
)


@st.composite
def barcode_blocks(draw: st.DrawFn) -> BarcodeBlock:
    symbology = draw(st.sampled_from(sorted(BARCODE_DATA)))
    return BarcodeBlock(
        symbology=symbology,  # type: ignore[arg-type]
        data=draw(BARCODE_DATA[symbology]),
        height=draw(st.integers(1, 255)),
        width=draw(st.integers(2, 6)),
        text_position=draw(st.sampled_from(["none", "above", "below", "both"])),
        align=draw(aligns),
    )


image_blocks = st.builds(ImageBlock, data=image_data(), align=aligns)
feed_blocks = st.builds(FeedBlock, lines=st.integers(1, 255))
cut_blocks = st.builds(CutBlock, mode=st.sampled_from(["full", "partial"]))
drawer_blocks = st.builds(DrawerBlock, pin=st.sampled_from([2, 5]))

BLOCKS: dict[str, st.SearchStrategy[Any]] = {
    "text": text_blocks,
    "separator": separator_blocks,
    "qr": qr_blocks,
    "barcode": barcode_blocks(),
    "image": image_blocks,
    "feed": feed_blocks,
    "cut": cut_blocks,
    "drawer": drawer_blocks,
}
blocks = st.one_of(*BLOCKS.values())

documents = st.builds(
    Document,
    width=st.integers(16, 80),
    blocks=st.lists(blocks, min_size=1, max_size=12).map(tuple),
)
raw_contents = st.builds(RawContent, data=st.binary(min_size=1, max_size=2048))
contents = st.one_of(documents, raw_contents)


# --- invalid content -----------------------------------------------------------------------

#: Integer fields and their inclusive ranges, by block type.
INT_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "text": {"underline": (0, 2), "width": (1, 8), "height": (1, 8)},
    "qr": {"size": (1, 16)},
    "barcode": {"height": (1, 255), "width": (2, 6)},
    "feed": {"lines": (1, 255)},
}
#: Values of the wrong type for a field, by what the field holds.
WRONG_TYPES: dict[str, list[Any]] = {
    "int": ["3", 2.5, True, None, [1]],
    "bool": [1, "true", None],
    "str": [5, None, ["a"], {"a": 1}],
    "enum": ["sideways", 7, None],
    "bytes": [12, "***not base64***", None],
}
FIELD_KINDS: dict[str, dict[str, str]] = {
    "text": {
        "text": "str",
        "align": "enum",
        "bold": "bool",
        "underline": "int",
        "width": "int",
        "height": "int",
        "invert": "bool",
    },
    "separator": {"char": "str"},
    "qr": {"data": "str", "size": "int", "error_correction": "enum", "align": "enum"},
    "barcode": {
        "symbology": "enum",
        "data": "str",
        "height": "int",
        "width": "int",
        "text_position": "enum",
        "align": "enum",
    },
    "image": {"data": "bytes", "align": "enum"},
    "feed": {"lines": "int"},
    "cut": {"mode": "enum"},
    "drawer": {"pin": "enum"},
}
#: The required field of each block type that has one.
REQUIRED: dict[str, str] = {"text": "text", "qr": "data", "barcode": "symbology", "image": "data"}
BAD_BARCODES: list[tuple[str, str]] = [
    ("EAN13", "4006381333932"),  # wrong check digit
    ("EAN13", "400638133393"),  # a digit short
    ("EAN13", "40063813339X1"),
    ("EAN8", "96385075"),  # wrong check digit (96385074 is valid)
    ("UPC-A", "036000291453"),  # wrong check digit (036000291452 is valid)
    ("ITF", "12345"),  # odd length
    ("CODE39", "abc"),  # lower case
    ("CODE128", "caf\u00e9"),  # not ASCII
    ("CODE128", "tab\there"),
]


@st.composite
def invalid_contents(draw: st.DrawFn) -> tuple[Any, str]:
    """A JSON-like content object with exactly one thing wrong, and the path naming it."""
    doc = msgspec.to_builtins(draw(documents))
    doc["blocks"] = list(doc["blocks"])  # to_builtins keeps the tuple
    i = draw(st.integers(0, len(doc["blocks"]) - 1))
    block = doc["blocks"][i]
    kind = block["type"]
    at = f"$.blocks[{i}]"
    mutation = draw(
        st.sampled_from(
            [
                "out_of_range",
                "wrong_type",
                "unknown_field",
                "missing_field",
                "bad_barcode",
                "bad_image",
                "control_char",
                "unknown_block",
                "doc_width",
                "doc_unknown_field",
                "no_blocks",
            ]
        )
    )
    if mutation == "out_of_range" and kind in INT_RANGES:
        field = draw(st.sampled_from(sorted(INT_RANGES[kind])))
        lo, hi = INT_RANGES[kind][field]
        block[field] = draw(st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1)))
        return doc, f"{at}.{field}"
    if mutation == "wrong_type" and kind in FIELD_KINDS:
        field = draw(st.sampled_from(sorted(FIELD_KINDS[kind])))
        block[field] = draw(st.sampled_from(WRONG_TYPES[FIELD_KINDS[kind][field]]))
        return doc, f"{at}.{field}"
    if mutation == "unknown_field":
        block[draw(st.sampled_from(["algin", "colour", "sizee", "font"]))] = 1
        return doc, at
    if mutation == "missing_field" and kind in REQUIRED:
        del block[REQUIRED[kind]]
        return doc, at
    if mutation == "bad_barcode":
        symbology, data = draw(st.sampled_from(BAD_BARCODES))
        doc["blocks"][i] = {"type": "barcode", "symbology": symbology, "data": data}
        return doc, f"{at}.data"
    if mutation == "bad_image":
        junk = draw(st.sampled_from([b"GIF89a" + b"\0" * 20, b"\x89PNG\r\n\x1a\n", b"hello"]))
        doc["blocks"][i] = {"type": "image", "data": junk}
        return doc, f"{at}.data"
    if mutation == "control_char":
        control = draw(st.sampled_from(["\x1b", "\x00", "\r", "\x7f", "\x9b", "\x1d"]))
        doc["blocks"][i] = {"type": "text", "text": f"a{control}b"}
        return doc, f"{at}.text"
    if mutation == "unknown_block":
        doc["blocks"][i] = {"type": draw(st.sampled_from(["logo", "TEXT", "", "beep"]))}
        return doc, f"{at}.type"
    if mutation == "doc_width":
        doc["width"] = draw(st.one_of(st.integers(max_value=15), st.integers(min_value=81)))
        return doc, "$.width"
    if mutation == "doc_unknown_field":
        doc["copies"] = 2  # copies belongs on the print params, not in the content
        return doc, "$"
    # The drawn mutation does not apply to this block type: empty the document instead.
    doc["blocks"] = []
    return doc, "$.blocks"
