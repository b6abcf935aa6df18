"""The wire contract: every Struct round-trips, every decoder turns any bytes into a message or
a typed error, topics build and parse symmetrically."""

from __future__ import annotations

import os
import uuid

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocol as p

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)
texts = st.text(max_size=50)
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=1e12)
error_infos = st.builds(
    p.ErrorInfo, code=st.sampled_from(p.ErrorCode), message=texts, retryable=st.booleans()
)
results = st.builds(
    p.PrintResult,
    printer=ids,
    bytes=st.integers(0, 10**9),
    duration_ms=finite,
    replayed=st.booleans(),
)
replies = st.one_of(
    st.builds(p.Accepted, job_id=st.none() | ids, at=finite),
    st.builds(p.Done, job_id=st.none() | ids, at=finite, result=results),
    st.builds(p.Failed, job_id=st.none() | ids, at=finite, error=error_infos),
)
printer_states = st.builds(
    p.PrinterState,
    name=ids,
    kind=ids,
    online=st.booleans(),
    paper=st.sampled_from(["ok", "near_end", "out", "unknown"]),
    cover_open=st.none() | st.booleans(),
    last_error=st.none() | error_infos,
    last_printed_at=st.none() | finite,
)
presences = st.builds(
    p.Presence,
    state=st.sampled_from(["online", "offline"]),
    session=st.integers(0, 2**62),
    branch_id=ids,
    agent_id=ids,
    version=texts,
    at=finite,
    reason=texts,
)
statuses = st.builds(
    p.AgentStatus,
    branch_id=ids,
    agent_id=ids,
    session=st.integers(0, 2**62),
    version=texts,
    os=texts,
    started_at=finite,
    uptime_s=finite,
    cpu_percent=finite,
    rss_bytes=st.integers(0, 2**40),
    queue_depth=st.integers(0, 10**6),
    printers=st.lists(printer_states, max_size=4),
    at=finite,
)


@given(replies)
def test_reply_round_trip(reply: p.Reply) -> None:
    assert p.decode_reply(p.encode(reply)) == reply


@given(presences)
def test_presence_round_trip(presence: p.Presence) -> None:
    assert p.decode_presence(p.encode(presence)) == presence


@given(statuses)
def test_status_round_trip(status: p.AgentStatus) -> None:
    assert p.decode_status(p.encode(status)) == status


@given(ids)
def test_request_round_trip(printer: str) -> None:
    params = p.PrinterTestParams(printer=printer)
    request = p.Request(method=p.METHOD_PRINTER_TEST, params=msgspec.Raw(p.encode(params)))
    decoded = p.decode_request(p.encode(request))
    assert decoded.method == p.METHOD_PRINTER_TEST
    assert p.decode_params(decoded) == params


DECODERS = [p.decode_request, p.decode_reply, p.decode_presence, p.decode_status]


@pytest.mark.parametrize("decode", DECODERS, ids=lambda d: d.__name__)
@given(data=st.binary(max_size=300))
def test_decoders_raise_only_typed_errors(decode: object, data: bytes) -> None:
    try:
        decode(data)  # type: ignore[operator]
    except p.ProtocolError as exc:
        assert exc.message
        assert isinstance(exc.code, p.ErrorCode)


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8) | st.integers(), max_size=5))
def test_request_params_of_wrong_shape_are_typed_errors(params: dict[str, object]) -> None:
    raw = msgspec.json.encode({"v": 1, "method": p.METHOD_PRINTER_TEST, "params": params})
    try:
        p.decode_params(p.decode_request(raw))
    except p.DecodeError as exc:
        assert "params of printer.test" in exc.message


def test_unknown_method_and_newer_version_have_their_codes() -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.decode_params(p.decode_request(b'{"v":1,"method":"printer.explode"}'))
    assert info.value.code is p.ErrorCode.UNKNOWN_METHOD
    with pytest.raises(p.ProtocolError) as info:
        p.decode_request(b'{"v":99,"method":"printer.test"}')
    assert info.value.code is p.ErrorCode.UNSUPPORTED_VERSION


def test_oversized_payload_is_refused_before_parsing() -> None:
    big = b'{"v":1,"method":"' + b"x" * p.MAX_PAYLOAD_BYTES + b'"}'
    with pytest.raises(p.DecodeError, match="exceeds"):
        p.decode_request(big)


@given(branch=ids, agent=ids)
def test_topics_build_and_parse(branch: str, agent: str) -> None:
    for build, kind in [
        (p.request_topic, p.TopicKind.REQUEST),
        (p.presence_topic, p.TopicKind.PRESENCE),
        (p.status_topic, p.TopicKind.STATUS),
    ]:
        assert p.parse_topic(build(branch, agent)) == p.Topic(kind, branch, agent, agent)


@given(branch=ids, requester=ids, agent=ids)
def test_reply_topics_name_the_answering_agent(branch: str, requester: str, agent: str) -> None:
    topic = p.reply_topic(branch, requester, agent)
    assert p.parse_topic(topic) == p.Topic(p.TopicKind.REPLY, branch, requester, agent)
    assert p.reply_filter(requester) == f"pm/v1/+/reply/{requester}/+"
    # the old form without the agent is no reply topic any more
    with pytest.raises(p.InvalidTopic):
        p.parse_topic(f"pm/v1/{branch}/reply/{requester}")


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "a b", "..", "x" * 65, "-lead", "a\x00"])
def test_unsafe_ids_are_refused(bad: str) -> None:
    assert not p.is_valid_id(bad)
    with pytest.raises(p.InvalidId):
        p.request_topic(bad, "agent")


@given(st.text(max_size=80))
def test_parse_topic_accepts_only_the_tree(topic: str) -> None:
    try:
        parsed = p.parse_topic(topic)
    except p.InvalidTopic:
        return
    assert topic.startswith("pm/v1/")
    assert p.is_valid_id(parsed.branch_id) and p.is_valid_id(parsed.name)


def test_job_ids_are_unique_ordered_and_safe() -> None:
    job_ids = [p.new_job_id() for _ in range(2000)]
    assert len(set(job_ids)) == len(job_ids)
    assert all(p.is_valid_id(j) and len(j) == 32 for j in job_ids)
    assert job_ids == sorted(job_ids)
    for job_id in job_ids[::100]:
        as_uuid = uuid.UUID(job_id)
        assert as_uuid.version == 7 and as_uuid.variant == uuid.RFC_4122


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_makes_other_job_ids_than_its_parent() -> None:
    """Random bytes are drawn ahead; a forked child must not reuse the parent's."""
    p.new_job_id()  # the parent holds bytes drawn ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, p.new_job_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    parent = p.new_job_id()
    assert child[16:] != parent[16:]  # the random part (the first 16 digits hold the time)


def test_retryable_follows_the_code() -> None:
    assert p.error_info(p.ErrorCode.AGENT_OFFLINE, "x").retryable
    assert not p.error_info(p.ErrorCode.PAPER_OUT, "x").retryable


@pytest.mark.parametrize("v", [-1, 0, 2, 10**6])
def test_unknown_protocol_versions_are_refused_both_ways(v: int) -> None:
    with pytest.raises(p.UnsupportedVersion) as refused:
        p.decode_request(b'{"v":%d,"method":"printer.test","params":{}}' % v)
    assert refused.value.code is p.ErrorCode.UNSUPPORTED_VERSION
    for decode, payload in [
        (p.decode_reply, b'{"v":%d,"stage":"accepted"}' % v),
        (
            p.decode_presence,
            b'{"v":%d,"state":"online","session":1,"branch_id":"b","agent_id":"a"}' % v,
        ),
        (p.decode_status, b'{"v":%d,"branch_id":"b","agent_id":"a","session":1}' % v),
    ]:
        with pytest.raises(p.UnsupportedVersion):
            decode(payload)
    assert p.decode_reply(b'{"v":1,"stage":"accepted"}').v == 1
