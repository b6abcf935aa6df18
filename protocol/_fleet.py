"""Fleet management messages: remote printer configuration and signed releases.

* :class:`PrintersConfig` is retained on an agent's ``config`` topic. ``version`` only grows; the
  agent applies a newer version without a restart and answers in its status
  (``config_version``, or ``config_error`` naming the version it refused and why).
* :class:`ReleaseManifest` is retained on a channel's release topic, :class:`BranchPin` on a
  branch's. The signature is Ed25519 over :func:`release_signed_bytes` (channel, version,
  artifact name and SHA-256), so neither the artifact nor what the manifest says about it can be
  changed without the agents noticing. ``rollout_percent`` is not signed: the cloud widens a
  rollout without the release key.
* :class:`UpdateInfo` is the agent's answer about updates, carried in its status.
"""

from __future__ import annotations

from typing import Final

import msgspec

from ._errors import DecodeError
from ._messages import _Wire
from ._version import MAX_PAYLOAD_BYTES, PROTOCOL_VERSION


class PrintersConfig(_Wire, kw_only=True, frozen=True):
    """An agent's printers as the cloud manages them.

    ``printers: null`` hands them back to the agent's own TOML (a version like any other, so
    an agent offline when it was sent still gets it).

    ``printers`` holds the printer tables of the agent's TOML config, as JSON (a list of objects
    with ``kind``, ``name``, ...); the agent decodes them with its own schema, so a kind or key it
    does not know is refused by the agent itself, with the path of the bad key.
    """

    v: int = PROTOCOL_VERSION
    version: int
    printers: msgspec.Raw = msgspec.Raw(b"[]")
    at: float = 0.0


class ReleaseManifest(_Wire, kw_only=True, frozen=True):
    v: int = PROTOCOL_VERSION
    channel: str
    version: str
    #: File name of the artifact (a wheel), fetched from the agent's configured ``base_url``.
    artifact: str
    #: Hex SHA-256 of the artifact.
    sha256: str
    #: Base64 Ed25519 signature of :func:`release_signed_bytes`.
    signature: str
    #: Agents whose id hashes below this percentage take the release (0-100); not signed.
    rollout_percent: int = 100
    published_at: float = 0.0


class BranchPin(_Wire, kw_only=True, frozen=True):
    """The agents of ``branch_id`` run ``release`` whatever their channel publishes."""

    v: int = PROTOCOL_VERSION
    branch_id: str
    release: ReleaseManifest


_SIGNED_PREFIX: Final = b"printermaster-release-v1\n"
_encoder = msgspec.json.Encoder(order="sorted")


def release_signed_bytes(*, channel: str, version: str, artifact: str, sha256: str) -> bytes:
    """The exact bytes a release signature covers (canonical JSON, keys sorted)."""
    body = {"artifact": artifact, "channel": channel, "sha256": sha256.lower(), "version": version}
    return _SIGNED_PREFIX + _encoder.encode(body)


def manifest_signed_bytes(manifest: ReleaseManifest) -> bytes:
    return release_signed_bytes(
        channel=manifest.channel,
        version=manifest.version,
        artifact=manifest.artifact,
        sha256=manifest.sha256,
    )


_config = msgspec.json.Decoder(PrintersConfig)
_manifest = msgspec.json.Decoder(ReleaseManifest)
_pin = msgspec.json.Decoder(BranchPin)


def _check(data: bytes, what: str) -> None:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise DecodeError(f"{what} of {len(data)} bytes exceeds the {MAX_PAYLOAD_BYTES} byte limit")


def decode_printers_config(data: bytes) -> PrintersConfig:
    _check(data, "printer configuration")
    try:
        return _config.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise DecodeError(f"malformed printer configuration: {exc}") from exc


def decode_manifest(data: bytes) -> ReleaseManifest:
    _check(data, "release manifest")
    try:
        return _manifest.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise DecodeError(f"malformed release manifest: {exc}") from exc


def decode_pin(data: bytes) -> BranchPin:
    _check(data, "branch pin")
    try:
        return _pin.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise DecodeError(f"malformed branch pin: {exc}") from exc
