"""The fleet messages of the wire contract: round trips, decoders that only raise typed errors,
topics, and what a release signature covers."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocol as p

from .test_protocol import error_infos, finite, ids, statuses, texts

manifests = st.builds(
    p.ReleaseManifest,
    channel=ids,
    version=ids,
    artifact=texts,
    sha256=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    signature=texts,
    rollout_percent=st.integers(0, 100),
    published_at=finite,
)
pins = st.builds(p.BranchPin, branch_id=ids, release=manifests)
updates = st.builds(
    p.UpdateInfo, channel=ids, state=ids, target=texts, error=st.none() | error_infos
)
found = st.builds(
    p.DiscoveredPrinter,
    kind=st.sampled_from(["cups", "usb", "network"]),
    name=ids,
    description=texts,
    config=st.dictionaries(ids, ids | st.integers(0, 65535), max_size=4),
)


@given(manifests)
def test_manifest_round_trip(manifest: p.ReleaseManifest) -> None:
    assert p.decode_manifest(p.encode(manifest)) == manifest


@given(pins)
def test_pin_round_trip(pin: p.BranchPin) -> None:
    assert p.decode_pin(p.encode(pin)) == pin


@given(st.integers(1, 2**62), st.lists(st.dictionaries(ids, ids, max_size=3), max_size=3))
def test_printers_config_round_trip(version: int, printers: list[dict[str, str]]) -> None:
    raw = msgspec.json.encode(printers)
    message = p.PrintersConfig(version=version, printers=msgspec.Raw(raw), at=1.5)
    decoded = p.decode_printers_config(p.encode(message))
    assert decoded.version == version and msgspec.json.decode(bytes(decoded.printers)) == printers


@given(
    statuses,
    st.integers(0, 2**62),
    st.none() | st.builds(p.ConfigRejection, version=st.integers(0, 2**62), error=error_infos),
    updates,
    st.lists(found, max_size=3),
)
def test_status_with_fleet_fields_round_trips(
    status: p.AgentStatus,
    version: int,
    rejection: p.ConfigRejection | None,
    update: p.UpdateInfo,
    discovered: list[p.DiscoveredPrinter],
) -> None:
    status = msgspec.structs.replace(
        status,
        config_version=version,
        config_error=rejection,
        update=update,
        discovered_printers=discovered,
    )
    assert p.decode_status(p.encode(status)) == status


def test_an_older_status_without_fleet_fields_still_decodes() -> None:
    old = b'{"v":1,"branch_id":"b","agent_id":"a","session":1}'
    status = p.decode_status(old)
    assert status.config_version == 0 and status.config_error is None
    assert status.update == p.UpdateInfo() and status.discovered_printers == []


@pytest.mark.parametrize("decode", [p.decode_printers_config, p.decode_manifest, p.decode_pin])
@given(data=st.binary(max_size=300))
def test_fleet_decoders_raise_only_typed_errors(decode: object, data: bytes) -> None:
    try:
        decode(data)  # type: ignore[operator]
    except p.ProtocolError as exc:
        assert exc.message


def test_fleet_topics() -> None:
    assert p.config_topic("b1", "a1") == "pm/v1/b1/agents/a1/req/config"
    assert p.config_topic("b1", "a1").startswith(p.request_topic("b1", "a1") + "/")
    assert p.branch_release_topic("b1") == "pm/v1/b1/release"
    assert p.channel_release_topic("stable") == "pm/releases/v1/stable"
    for bad in ("a/b", "+", "#", ""):
        with pytest.raises(p.InvalidId):
            p.channel_release_topic(bad)
        with pytest.raises(p.InvalidId):
            p.branch_release_topic(bad)
    # none of them is a topic the API acts on
    for topic in (p.config_topic("b", "a"), p.branch_release_topic("b")):
        with pytest.raises(p.InvalidTopic):
            p.parse_topic(topic)


def test_signed_bytes_are_canonical() -> None:
    one = p.release_signed_bytes(channel="c", version="1", artifact="x.whl", sha256="AB" * 32)
    two = p.release_signed_bytes(channel="c", version="1", artifact="x.whl", sha256="ab" * 32)
    assert one == two and one.startswith(b"printermaster-release-v1\n")
    assert one != p.release_signed_bytes(channel="d", version="1", artifact="x.whl", sha256="ab")
