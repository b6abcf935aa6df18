"""``printermaster api --config api.toml --check``: before the first start of an instance, check
what it needs — the settings, the store, every broker with the cloud login and the admin login —
and say what fails, without starting the API."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

import aiomqtt

from cloud_api import ApiSettings, MqttClientSettings
from mqtt_adapter import make_client


async def _broker(mqtt: MqttClientSettings, client_id: str) -> str | None:
    """None when ``mqtt``'s login connects, else why not."""
    client = make_client(
        mqtt.host,
        mqtt.port,
        client_id=client_id,
        username=mqtt.username,
        password=mqtt.password,
        tls=mqtt.tls,
        ca_file=mqtt.ca_file,
        timeout=5,
    )
    try:
        async with client:
            return None
    except aiomqtt.MqttError as exc:
        return str(exc)


async def _store(url: str) -> str | None:
    from cloud_api.store import open_store

    try:
        store = await open_store(url)
    except Exception as exc:
        return str(exc)
    try:
        await store.ping()
    except Exception as exc:
        return str(exc)
    finally:
        await store.close()
    return None


async def check(settings: ApiSettings, out: TextIO = sys.stdout) -> bool:
    """Print one line per check; True when all pass."""
    where = settings.store_url.rsplit("@", 1)[-1]  # no password in the output
    results: list[tuple[str, str | None]] = [(f"store {where}", await _store(settings.store_url))]
    # a client id of its own: the running instance's session is not disturbed
    probe = f"cloud-{settings.instance_id}-check"
    for mqtt in settings.mqtt.endpoints():
        name = f"broker {mqtt.host}:{mqtt.port} as {mqtt.username}"
        results.append((name, await _broker(mqtt, probe)))
    if settings.admin_mqtt is not None:
        for admin in settings.admin_mqtt.endpoints():
            name = f"broker {admin.host}:{admin.port} as {admin.username} (provisioning)"
            results.append((name, await _broker(admin, f"{probe}-admin")))
    for name, problem in results:
        line = f"[OK] {name}" if problem is None else f"[FAIL] {name}: {problem}"
        print(line, file=out)
    return all(problem is None for _, problem in results)


def run_check(settings: ApiSettings) -> int:
    return 0 if asyncio.run(check(settings)) else 1
