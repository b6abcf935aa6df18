"""Where MQTT library code may be touched: ``protocol`` imports none of it and patches nothing;
only ``mqtt_adapter/`` (and its own tests) reach into paho's or aiomqtt's private attributes."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest

ROOT = Path(__file__).resolve().parent.parent

_IMPORT_CHECK = """
import sys
import {module}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("paho", "aiomqtt", "asyncio"))
print(",".join(loaded))
if "paho.mqtt.properties" in sys.modules:
    from paho.mqtt import _packet
    from paho.mqtt.properties import Properties
    assert _packet.Properties is Properties, "paho's Properties were patched"
"""


def _loaded_by(module: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK.format(module=module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return out.split(",") if out else []


def test_importing_protocol_loads_no_mqtt_client_and_no_asyncio() -> None:
    assert _loaded_by("protocol") == []


def test_importing_the_adapter_patches_nothing() -> None:
    """The fast paths are applied by the API and the agent (``install_fast_paths``), never as
    a side effect of an import."""
    assert "paho.mqtt.properties" in _loaded_by("mqtt_adapter")  # the check above ran


def _private_names() -> set[str]:
    """Every private attribute of an ``aiomqtt.Client`` and of the paho client it drives, as
    installed (a new one in an upgrade is covered too)."""

    async def build() -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", 1)

    client = asyncio.run(build())
    names: set[str] = set()
    for obj in (client, client._client):
        names |= set(vars(obj)) | set(dir(type(obj)))
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


#: Private names of the libraries that are also ordinary attribute names of our own classes
#: (a printer's ``_sock``, a writer's ``_queue``, the agent's ``_connected`` ...): a textual
#: search cannot tell whose they are. Every other private name is searched for.
_COMMON = {
    "_connected",
    "_lock",
    "_on_connect",
    "_on_disconnect",
    "_on_message",
    "_queue",
    "_sock",
    "_state",
    "_thread",
    "_transport",
}
_PRIVATE_MODULES = re.compile(r"paho\.mqtt\._\w|from paho\.mqtt import _\w|aiomqtt\._\w")


def _attribute_pattern(names: set[str]) -> re.Pattern[str]:
    """``x.name``, and ``"name"`` (``getattr``/``setattr``) for every name."""
    return re.compile(r"(?:\.|[\"'])(" + "|".join(sorted(map(re.escape, names))) + r")\b")


def _checked_files() -> list[Path]:
    files = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        top = relative.parts[0]
        if top in ("mqtt_adapter", "build", "dist") or top.startswith("."):
            continue
        if relative.parts[0] == "tests" and path.name.startswith("test_mqtt_adapter_"):
            continue  # the adapter's own tests and canaries
        files.append(path)
    return files


def test_no_file_outside_the_adapter_touches_mqtt_library_internals() -> None:
    names = _private_names() - _COMMON
    assert {"_client", "_pending_publishes", "_packet_write", "_out_packet"} <= names
    attribute = _attribute_pattern(names)
    found = []
    for path in _checked_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            hit = attribute.search(line) or _PRIVATE_MODULES.search(line)
            if hit:
                found.append(f"{path.relative_to(ROOT)}:{number}: {hit.group()}")
    assert not found, "reach paho/aiomqtt internals through mqtt_adapter:\n" + "\n".join(found)


def test_the_search_finds_what_it_looks_for() -> None:
    """The search above is not vacuous: a file doing what ops/tls_latency.py once did is
    found."""
    attribute = _attribute_pattern(_private_names() - _COMMON)
    assert attribute.search("    sock = c._client.socket()")
    assert attribute.search('    pending = getattr(client, "_pending_publishes", None)')
    assert attribute.search("pending = client._pending_publishes")
    assert _PRIVATE_MODULES.search("from paho.mqtt import _packet")
    assert len(_checked_files()) > 100


_APPLIED_CHECK = """
import asyncio
import sys

from paho.mqtt import _packet
from paho.mqtt.properties import Properties

from mqtt_adapter._fastprops import FastProperties

assert _packet.Properties is Properties  # nothing applied yet


async def api():
    from cloud_api import ApiSettings
    from cloud_api._mqtt import MqttLink
    from cloud_api._registry import Registry
    from cloud_api._settings import MqttClientSettings

    settings = ApiSettings(api_token="t", mqtt=MqttClientSettings(username="u", password="p"))
    link = MqttLink(settings, Registry(), lambda *_: None)
    client = link._make_client(settings.mqtt)
    assert "_packet_write" in vars(client._client), "writes not coalesced"
    assert type(client._queue).__name__ == "HandledAtOnce", "messages not handled at once"


async def agent():
    from branch_agent import Agent, parse_config

    config = parse_config(
        f'branch_id = "b1"\\nagent_id = "a1"\\ndata_dir = "{sys.argv[1]}"\\n'
        '[mqtt]\\nusername = "agent:b1:a1"\\npassword = "p"\\n'
    )
    agent = Agent(config)
    client = agent._connect(agent.config.mqtt)
    assert client.manual_ack and client._client._manual_ack


asyncio.run({side}())
assert _packet.Properties is FastProperties, "paho's decoders not given the fast Properties"
"""


@pytest.mark.parametrize("side", ["api", "agent"])
def test_the_api_and_the_agent_apply_the_fast_paths(side: str, tmp_path: Path) -> None:
    """Each in a fresh interpreter: building the API's link or the agent applies the fast paths
    (the speed the benchmark measures), and the API's client batches writes and handles
    messages as paho reads them."""
    subprocess.run(
        [sys.executable, "-c", _APPLIED_CHECK.replace("{side}", side), str(tmp_path)],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
