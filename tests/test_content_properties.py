"""Properties of print-job content: valid content round-trips and renders, deterministically;
invalid content is refused with the path of the offending field; nothing else escapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from branch_agent._render import render_content
from protocol import Block, Content, DecodeError, Document, decode_content, encode, validate_content
from tests.content_strategies import BLOCKS, contents, documents, invalid_contents
from tests.escpos_dump import disassemble


def both_ways(obj: Any) -> list[Callable[[], Content]]:
    """Validate ``obj`` as a Python object, and decode it as JSON bytes."""
    return [lambda: validate_content(obj), lambda: decode_content(msgspec.json.encode(obj))]


# Images are built and decoded with Pillow in most examples: no per-example deadline.
slow = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@slow
@given(contents)
def test_content_round_trips(content: Content) -> None:
    assert validate_content(content) == content
    assert decode_content(encode(content)) == content
    assert validate_content(json.loads(encode(content))) == content


@slow
@given(st.sampled_from(sorted(BLOCKS)).flatmap(lambda kind: BLOCKS[kind]))
def test_every_block_round_trips(block: Any) -> None:
    assert msgspec.json.decode(encode(block), type=Block) == block
    assert msgspec.convert(msgspec.to_builtins(block), Block) == block


@slow
@given(documents)
def test_valid_documents_render_deterministically(document: Document) -> None:
    out = render_content(document)
    assert out.startswith(b"\x1b@")
    assert len(out) > 2
    assert render_content(document) == out
    assert render_content(decode_content(encode(document))) == out
    assert render_content(document, copies=2) == out * 2
    # Every byte belongs to a command we know: text never smuggles control codes in.
    assert not [line for line in disassemble(out) if line.startswith("??")]


@slow
@given(invalid_contents())
def test_invalid_content_is_refused_naming_the_field(case: tuple[Any, str]) -> None:
    obj, path = case
    for attempt in both_ways(obj):
        try:
            attempt()
        except DecodeError as exc:
            assert exc.path == path, exc.message
            assert exc.message.endswith(f" - at `{path}`")
        else:
            raise AssertionError(f"accepted, expected a refusal at {path}")


@given(st.binary(max_size=4096))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    try:
        decode_content(data)
    except DecodeError as exc:
        assert exc.path is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
block_like = st.dictionaries(
    st.sampled_from(["type", "text", "data", "size", "width", "pin", "mode", "symbology"]),
    st.sampled_from(sorted(BLOCKS)) | json_values,
)
content_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["document", "raw"]) | json_values},
    optional={
        "blocks": st.lists(block_like, max_size=4),
        "width": json_values,
        "data": json_values,
    },
)


@slow
@given(content_like | json_values)
def test_random_json_only_raises_decode_error(obj: Any) -> None:
    for attempt in both_ways(obj):
        try:
            content = attempt()
        except DecodeError as exc:
            assert exc.path is not None and exc.path.startswith("$")
        else:
            render_content(content)
