"""Printer configurations and releases in the job store, on SQLite and PostgreSQL, published
through the real broker of the test stack."""

from __future__ import annotations

import base64
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_api._errors import ApiError
from cloud_api._registry import Registry
from cloud_api._settings import ApiSettings
from cloud_api.printers import PrinterConfigService
from cloud_api.releases import PinBody, ReleaseBody, ReleaseService, public_key_b64, sign_artifact
from cloud_api.store import Store
from printermaster.stack import Stack
from protocol import ErrorCode

from ._releases import build_wheel
from .conftest import unique_id


def _settings(stack: Stack) -> ApiSettings:
    cloud = stack.creds("cloud")
    return msgspec.convert(
        {
            "api_token": "x",
            "mqtt": {
                "port": stack.mqtt_port,
                "username": cloud.username,
                "password": cloud.password,
            },
        },
        ApiSettings,
    )


async def test_printer_configs_get_growing_versions(store: Store, stack: Stack) -> None:
    service = PrinterConfigService(store, _settings(stack), Registry())
    branch, agent = unique_id("b"), unique_id("a")
    with pytest.raises(ApiError) as info:
        await service.get(branch, agent)  # never heard of, never configured
    assert info.value.code is ErrorCode.NOT_FOUND
    first = await service.put(branch, agent, [{"kind": "virtual", "name": "A"}])
    second = await service.put(branch, agent, [{"kind": "virtual", "name": "B"}])
    assert 0 < first.version < second.version
    view = await service.get(branch, agent)
    assert view.version == second.version and view.printers == [{"kind": "virtual", "name": "B"}]
    assert view.applied_version is None and not view.applied and not view.agent_online
    with pytest.raises(ApiError) as info:
        await service.put(branch, agent, [{"kind": "virtual"}])
    assert info.value.code is ErrorCode.INVALID_REQUEST
    assert (await service.get(branch, agent)).version == second.version
    many = [{"kind": "virtual", "name": f"P{i}", "directory": "x" * 900} for i in range(300)]
    with pytest.raises(ApiError) as info:
        await service.put(branch, agent, many)
    assert info.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert (await service.get(branch, agent)).version == second.version


async def test_releases_channels_and_pins(store: Store, stack: Stack, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    service = ReleaseService(store, _settings(stack), public_key_b64(key))
    channel = unique_id("ch")

    def body(version: str, signer: Ed25519PrivateKey = key, percent: int = 100) -> ReleaseBody:
        wheel = build_wheel(tmp_path, version)
        manifest = sign_artifact(signer, wheel, channel=channel, version=version)
        fields = msgspec.structs.asdict(manifest)
        for name in ("v", "published_at", "rollout_percent"):
            fields.pop(name)
        return ReleaseBody(**fields, rollout_percent=percent)

    with pytest.raises(ApiError) as info:
        await service.current(channel)
    assert info.value.code is ErrorCode.NOT_FOUND
    await service.publish(body("1.0.0"))
    await service.publish(body("1.0.1", percent=10))
    current = await service.current(channel)
    assert (current.version, current.rollout_percent) == ("1.0.1", 10)
    assert (await service.set_rollout(channel, 50)).rollout_percent == 50
    # the API's key check: a forged signature never reaches the agents
    with pytest.raises(ApiError) as info:
        await service.publish(body("1.0.2", signer=Ed25519PrivateKey.generate()))
    assert info.value.field == "$.signature"
    bad = msgspec.structs.replace(body("1.0.3"), signature=base64.b64encode(b"x").decode())
    with pytest.raises(ApiError):
        await service.publish(bad)
    assert (await service.current(channel)).version == "1.0.1"

    branch = unique_id("b")
    pin = await service.pin(branch, PinBody(version="1.0.0", channel=channel))
    assert pin.release.version == "1.0.0" and pin.release.channel == channel
    with pytest.raises(ApiError) as info:
        await service.pin(branch, PinBody(version="9.9", channel=channel))
    assert info.value.code is ErrorCode.NOT_FOUND
    await service.unpin(branch)
