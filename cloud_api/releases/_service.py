"""Publishing releases (docs/updates.md): signed manifests per channel, version pins per branch.

A manifest is stored, then published retained on its channel's topic; a pin is published
retained on the branch's release topic with the pinned release's signed manifest, so a pinned
agent needs nothing else. With ``release_public_key`` set, the API refuses a manifest whose
signature does not verify: a mistake is caught here, before any agent downloads anything (the
agents verify it again with their own copy of the key: the API is not trusted with that).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from typing import Final

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol import (
    BranchPin,
    ErrorCode,
    ProtocolError,
    ReleaseManifest,
    branch_release_topic,
    channel_release_topic,
    decode_manifest,
    encode,
    manifest_signed_bytes,
    validate_id,
)

from .._errors import ApiError
from .._retained import publish_retained
from .._settings import ApiSettings
from ..store import Store

SCHEMA: Final = [
    """CREATE TABLE IF NOT EXISTS releases (
        channel TEXT NOT NULL,
        version TEXT NOT NULL,
        manifest TEXT NOT NULL,
        published_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (channel, version)
    )""",
    """CREATE TABLE IF NOT EXISTS release_channels (
        channel TEXT PRIMARY KEY,
        version TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS release_pins (
        branch_id TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        version TEXT NOT NULL
    )""",
]


class ReleaseBody(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What ``printermaster release sign`` prints, plus the share of agents that take it."""

    channel: str
    version: str
    artifact: str
    sha256: str
    signature: str
    rollout_percent: int = 100


class RolloutBody(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    rollout_percent: int


class PinBody(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    version: str
    channel: str = "stable"


def _check_version(version: str) -> None:
    try:
        validate_id(version, "version")
    except ProtocolError as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, exc.message, field="$.version") from exc


def _check_branch(branch_id: str) -> None:
    try:
        validate_id(branch_id, "branch id")
    except ProtocolError as exc:
        raise ApiError(ErrorCode.NOT_FOUND, f"branch {branch_id[:64]!r} not found") from exc


class ReleaseService:
    def __init__(self, store: Store, settings: ApiSettings, public_key: str | None) -> None:
        self._store = store
        self._settings = settings
        self._key = (
            Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key)) if public_key else None
        )
        self._ready = False
        self._lock = asyncio.Lock()

    async def _schema(self) -> None:
        if not self._ready:
            for statement in SCHEMA:
                await self._store._execute(statement, ())
            self._ready = True

    async def _manifest(self, channel: str, version: str) -> ReleaseManifest | None:
        await self._schema()
        rows = await self._store._fetch(
            "SELECT manifest FROM releases WHERE channel = ? AND version = ?", (channel, version)
        )
        return decode_manifest(str(rows[0][0]).encode()) if rows else None

    async def publish(self, body: ReleaseBody) -> ReleaseManifest:
        try:
            validate_id(body.channel, "channel")
        except ProtocolError as exc:
            raise ApiError(ErrorCode.INVALID_REQUEST, exc.message, field="$.channel") from exc
        _check_version(body.version)
        if not 0 <= body.rollout_percent <= 100:
            raise ApiError(
                ErrorCode.INVALID_REQUEST,
                "rollout_percent must be 0-100",
                field="$.rollout_percent",
            )
        manifest = ReleaseManifest(
            channel=body.channel,
            version=body.version,
            artifact=body.artifact,
            sha256=body.sha256.lower(),
            signature=body.signature,
            rollout_percent=body.rollout_percent,
            published_at=time.time(),
        )
        if self._key is not None:
            try:
                signature = base64.b64decode(manifest.signature, validate=True)
                self._key.verify(signature, manifest_signed_bytes(manifest))
            except (binascii.Error, ValueError, InvalidSignature) as exc:
                raise ApiError(
                    ErrorCode.INVALID_REQUEST,
                    "the signature does not verify with the API's release_public_key",
                    field="$.signature",
                ) from exc
        await self._schema()
        payload = encode(manifest)
        async with self._lock:
            await self._store._execute(
                """INSERT INTO releases (channel, version, manifest, published_at)
                VALUES (?, ?, ?, ?) ON CONFLICT (channel, version) DO UPDATE
                SET manifest = excluded.manifest, published_at = excluded.published_at""",
                (manifest.channel, manifest.version, payload.decode(), manifest.published_at),
            )
            await self._store._execute(
                """INSERT INTO release_channels (channel, version) VALUES (?, ?)
                ON CONFLICT (channel) DO UPDATE SET version = excluded.version""",
                (manifest.channel, manifest.version),
            )
            await publish_retained(
                self._settings.mqtt,
                self._settings.instance_id,
                channel_release_topic(manifest.channel),
                payload,
            )
        return manifest

    async def current(self, channel: str) -> ReleaseManifest:
        await self._schema()
        rows = await self._store._fetch(
            "SELECT version FROM release_channels WHERE channel = ?", (channel,)
        )
        manifest = await self._manifest(channel, str(rows[0][0])) if rows else None
        if manifest is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"no release on channel {channel[:64]!r}")
        return manifest

    async def set_rollout(self, channel: str, percent: int) -> ReleaseManifest:
        current = await self.current(channel)
        body = ReleaseBody(
            channel=channel,
            version=current.version,
            artifact=current.artifact,
            sha256=current.sha256,
            signature=current.signature,
            rollout_percent=percent,
        )
        return await self.publish(body)

    async def pin(self, branch_id: str, body: PinBody) -> BranchPin:
        _check_branch(branch_id)
        _check_version(body.version)
        manifest = await self._manifest(body.channel, body.version)
        if manifest is None:
            raise ApiError(
                ErrorCode.NOT_FOUND,
                f"no release {body.version[:64]!r} on channel {body.channel[:64]!r}",
            )
        pin = BranchPin(branch_id=branch_id, release=manifest)
        async with self._lock:
            await self._store._execute(
                """INSERT INTO release_pins (branch_id, channel, version) VALUES (?, ?, ?)
                ON CONFLICT (branch_id) DO UPDATE
                SET channel = excluded.channel, version = excluded.version""",
                (branch_id, body.channel, body.version),
            )
            await publish_retained(
                self._settings.mqtt,
                self._settings.instance_id,
                branch_release_topic(branch_id),
                encode(pin),
            )
        return pin

    async def unpin(self, branch_id: str) -> None:
        _check_branch(branch_id)
        await self._schema()
        async with self._lock:
            await self._store._execute("DELETE FROM release_pins WHERE branch_id = ?", (branch_id,))
            await publish_retained(
                self._settings.mqtt,
                self._settings.instance_id,
                branch_release_topic(branch_id),
                b"",
            )
