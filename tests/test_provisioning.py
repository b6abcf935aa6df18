"""Provisioning as a product feature: agents created, rotated and revoked through the API (admin
token only) and the CLI, against the real broker; the returned config is all an agent needs."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from branch_agent import load_config, parse_config
from broker import Credentials
from printermaster.stack import ChildProcess, Stack

from ._mqtt import NOT_AUTHORIZED, Probe
from ._wait import eventually
from .conftest import unique_id

#: Transports the provisioned agent is started with; TLS and WSS join once their listeners land.
TRANSPORTS = ["tcp", "tls", "websockets"]


class Launched:
    def __init__(self) -> None:
        self.processes: list[ChildProcess] = []

    def run(self, config_path: Path) -> ChildProcess:
        process = ChildProcess(
            f"agent {config_path.stem}",
            [sys.executable, "-m", "printermaster", "agent", "run", "--config", str(config_path)],
            config_path.with_suffix(".log"),
        ).start()
        self.processes.append(process)
        return process


@pytest.fixture
def launched() -> Iterator[Launched]:
    out = Launched()
    yield out
    for process in out.processes:
        process.stop()


def _provision(http: httpx.Client, branch_id: str, agent_id: str, **body: object) -> str:
    response = http.post(f"/v1/branches/{branch_id}/agents", json={"agent_id": agent_id, **body})
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/toml")
    assert response.headers["cache-control"] == "no-store"
    return response.text


def _save(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_agent_started_only_with_the_returned_config_serves_a_test_print(
    stack: Stack, launched: Launched, tmp_path: Path, transport: str
) -> None:
    branch_id, agent_id = unique_id("b"), unique_id("a")
    printers = [{"kind": "virtual", "name": "POS-80C"}]
    with stack.client(timeout=10) as http:
        text = _provision(http, branch_id, agent_id, printers=printers, transport=transport)
    config = load_config(_save(tmp_path, text))
    assert (config.branch_id, config.agent_id) == (branch_id, agent_id)
    assert config.mqtt.transport == ("websockets" if transport == "websockets" else "tcp")
    assert config.mqtt.tls == (transport != "tcp")
    if transport != "tcp":  # the agent verifies the broker with the CA from its config
        assert config.mqtt.ca_pem and "BEGIN CERTIFICATE" in config.mqtt.ca_pem
    assert config.mqtt.username == f"agent:{branch_id}:{agent_id}"
    expected_port = {
        "tcp": stack.mqtt_port,
        "tls": stack.tls_port,
        "websockets": stack.websockets_port,
    }[transport]
    assert config.mqtt.port == expected_port and len(config.mqtt.password) >= 32
    launched.run(tmp_path / "agent.toml")
    took = stack.wait_agent(branch_id, agent_id)
    with stack.client(timeout=10) as http:
        response = http.post(f"/v1/branches/{branch_id}/printers/POS-80C/test")
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    printed = sorted((config.data_path / "virtual" / "POS-80C").glob("*.prn"))
    assert [p.stem for p in printed] == [job_id]
    print(f"provisioned agent online {took:.2f} s after start")


def test_rotate_refuses_the_old_password_and_the_new_config_serves(
    stack: Stack, launched: Launched, tmp_path: Path
) -> None:
    branch_id, agent_id = unique_id("b"), unique_id("a")
    printers = [{"kind": "virtual", "name": "P1"}]
    with stack.client(timeout=10) as http:
        text = _provision(http, branch_id, agent_id, printers=printers)
        old = parse_config(text)
        process = launched.run(_save(tmp_path, text))
        stack.wait_agent(branch_id, agent_id)
        response = http.post(
            f"/v1/branches/{branch_id}/agents/{agent_id}/rotate-credentials",
            json={"printers": printers},
        )
        assert response.status_code == 200, response.text
        new = parse_config(response.text)
    assert new.mqtt.password != old.mqtt.password
    assert new.mqtt.username == old.mqtt.username and new.printers == old.printers
    # the broker dropped the running agent, and its old password no longer logs in
    stack.wait_agent(branch_id, agent_id, online=False, timeout=5)
    old_login = Credentials(old.mqtt.username, old.mqtt.password)
    assert Probe(stack.mqtt_port, old_login, client_id=f"x-{agent_id}").connect() != 0
    process.stop()
    path = tmp_path / "rotated.toml"
    path.write_text(response.text)
    launched.run(path)
    stack.wait_agent(branch_id, agent_id)
    with stack.client(timeout=10) as http:
        assert http.post(f"/v1/branches/{branch_id}/printers/P1/test").status_code == 200


def test_revoke_disconnects_the_agent_and_removes_it_from_the_registry(
    stack: Stack, launched: Launched, tmp_path: Path
) -> None:
    branch_id, agent_id = unique_id("b"), unique_id("a")
    with stack.client(timeout=10) as http:
        text = _provision(http, branch_id, agent_id, printers=[{"kind": "virtual", "name": "P"}])
        launched.run(_save(tmp_path, text))
        stack.wait_agent(branch_id, agent_id)
        started = time.monotonic()
        response = http.delete(f"/v1/branches/{branch_id}/agents/{agent_id}")
        assert response.status_code == 204, response.text
        eventually(
            lambda: not http.get(f"/v1/branches/{branch_id}/agents").json(),
            timeout=2,
            interval=0.01,
            what="the revoked agent gone from the list",
        )
        gone = time.monotonic() - started
        assert http.get(f"/v1/branches/{branch_id}/printers").json() == []
        test = http.post(f"/v1/branches/{branch_id}/printers/P/test")
        assert test.status_code == 404
        # revoking again: nothing left
        again = http.delete(f"/v1/branches/{branch_id}/agents/{agent_id}")
        assert again.status_code == 404 and again.json()["error"]["code"] == "NOT_FOUND"
    config = parse_config(text)
    creds = Credentials(config.mqtt.username, config.mqtt.password)
    assert Probe(stack.mqtt_port, creds, client_id=f"x-{agent_id}").connect() != 0
    print(f"revoked agent gone from the registry after {gone * 1000:.0f} ms")


def test_provisioning_errors_are_typed(stack: Stack) -> None:
    branch_id, agent_id = unique_id("b"), unique_id("a")
    with stack.client(timeout=10) as http:
        _provision(http, branch_id, agent_id)
        cases = [
            ("post", f"/v1/branches/{branch_id}/agents", {"agent_id": agent_id}, 409, "CONFLICT"),
            ("post", f"/v1/branches/{branch_id}/agents", {"agent_id": "../x"}, 422, None),
            ("post", f"/v1/branches/{branch_id}/agents", {"agent_id": "a b"}, 422, None),
            ("post", "/v1/branches/bad%20id/agents", {"agent_id": "a"}, 404, "NOT_FOUND"),
            (
                "post",
                f"/v1/branches/{branch_id}/agents",
                {"agent_id": "ok", "printers": [{"kind": "virtual", "name": "../../etc"}]},
                422,
                "INVALID_REQUEST",
            ),
            ("post", f"/v1/branches/{branch_id}/agents/nobody/rotate-credentials", None, 404, None),
            ("delete", f"/v1/branches/{branch_id}/agents/nobody", None, 404, "NOT_FOUND"),
        ]
        for method, url, body, status, code in cases:
            response = http.request(method.upper(), url, json=body)
            assert response.status_code == status, (url, body, response.text)
            error = response.json()["error"]
            assert code is None or error["code"] == code, error
        # the failed "../../etc" printer left no agent "ok" behind
        listed = _cli(stack, "list", "--branch", branch_id)
        assert listed.stdout.split() == [branch_id, agent_id, "enabled"]
        assert http.delete(f"/v1/branches/{branch_id}/agents/{agent_id}").status_code == 204


def test_debug_access_is_limited_to_its_branch(stack: Stack) -> None:
    branch_id, other = unique_id("b"), unique_id("b")
    with stack.client(timeout=10) as http:
        response = http.post(f"/v1/branches/{branch_id}/debug-access", json={"name": "alice"})
        assert response.status_code == 201, response.text
        login = response.json()
        creds = Credentials(login["username"], login["password"])
        probe = Probe(stack.mqtt_port, creds)
        assert probe.connect() == 0
        try:
            assert probe.subscribe(f"pm/v1/{branch_id}/agents/+/presence") == 1
            assert probe.subscribe(login["reply_filter"]) == 1
            assert login["reply_topic"] == f"pm/v1/{branch_id}/reply/debug/{{agent_id}}"
            # the login and its sending twin: each under its own client id, and no other
            assert Probe(stack.mqtt_port, creds, client_id="other-id").connect() == 0x87
            sender = Probe(stack.mqtt_port, Credentials(login["send_username"], creds.password))
            assert sender.connect() == 0
            sender.close()
            assert not probe._gone.is_set()
            assert probe.subscribe(f"pm/v1/{other}/agents/+/presence") == NOT_AUTHORIZED
            assert probe.subscribe("pm/v1/+/agents/+/presence") == NOT_AUTHORIZED
            assert probe.publish(f"pm/v1/{other}/agents/x/req", b"{}") == NOT_AUTHORIZED
            revoked = http.delete(f"/v1/branches/{branch_id}/debug-access/alice")
            assert revoked.status_code == 204
            assert probe.wait_disconnect(2)
        finally:
            probe.client.loop_stop()
    assert Probe(stack.mqtt_port, creds, client_id="again").connect() != 0


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "printermaster",
            "broker",
            "provision",
            args[0],
            "--state-dir",
            str(stack.state_dir),
            *args[1:],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_add_list_rotate_revoke(stack: Stack, tmp_path: Path) -> None:
    branch_id, agent_id = unique_id("b"), unique_id("a")
    ids = ["--branch", branch_id, "--agent", agent_id]
    added = _cli(stack, "add", *ids, "--virtual-printer", "POS-80C", "--data-dir", str(tmp_path))
    assert added.returncode == 0, added.stderr
    config = parse_config(added.stdout)
    assert [p.name for p in config.printers] == ["POS-80C"]
    creds = Credentials(config.mqtt.username, config.mqtt.password)
    probe = Probe(stack.mqtt_port, creds)
    assert probe.connect() == 0
    probe.close()
    listed = _cli(stack, "list", "--branch", branch_id)
    assert listed.returncode == 0 and listed.stdout.split() == [branch_id, agent_id, "enabled"]
    assert _cli(stack, "add", *ids).returncode == 1  # exists already
    out = tmp_path / "rotated.toml"
    rotated = _cli(stack, "rotate", *ids, "--platform", "windows", "-o", str(out))
    assert rotated.returncode == 0 and rotated.stdout == ""
    assert out.stat().st_mode & 0o777 == 0o600
    new = load_config(out)
    assert new.data_dir == WINDOWS_DATA_DIR  # the box moved to Windows
    assert new.mqtt.password != config.mqtt.password
    assert Probe(stack.mqtt_port, creds, client_id="old").connect() != 0
    revoked = _cli(stack, "revoke", *ids)
    assert revoked.returncode == 0, revoked.stderr
    assert _cli(stack, "list", "--branch", branch_id).stdout == ""
    new_creds = Credentials(new.mqtt.username, new.mqtt.password)
    assert Probe(stack.mqtt_port, new_creds, client_id="new").connect() != 0
    missing = _cli(stack, "revoke", *ids)
    assert missing.returncode == 1 and "no agent" in missing.stderr


WINDOWS_DATA_DIR = "C:\\ProgramData\\printermaster\\data"


@pytest.mark.parametrize(
    ("body", "data_dir"),
    [
        ({"platform": "windows"}, WINDOWS_DATA_DIR),
        # a spooler printer says where the agent runs
        ({"printers": [{"kind": "win32", "name": "POS-WIN"}]}, WINDOWS_DATA_DIR),
        ({"platform": "linux"}, None),
        ({}, None),
    ],
)
def test_provisioned_config_has_the_data_dir_of_its_platform(
    stack: Stack, body: dict[str, object], data_dir: str | None
) -> None:
    branch, agent = unique_id("b"), unique_id("a")
    with stack.client(timeout=10) as http:
        text = _provision(http, branch, agent, **body)
    config = parse_config(text, "provisioned")
    # the stack's Linux template: state_dir/agents/{branch_id}.{agent_id}
    linux = str(stack.state_dir / "agents" / f"{branch}.{agent}")
    assert config.data_dir == (data_dir or linux)


def test_provisioning_refuses_an_unknown_platform(stack: Stack) -> None:
    with stack.client(timeout=10) as http:
        response = http.post(
            f"/v1/branches/{unique_id('b')}/agents", json={"agent_id": "a1", "platform": "macos"}
        )
    assert response.status_code == 400, response.text


def test_render_places_windows_data_under_programdata() -> None:
    from cloud_api.provisioning import BrokerEndpoint, render_agent_config

    text = render_agent_config(
        branch_id="b1",
        agent_id="a1",
        creds=Credentials("agent:b1:a1", "pw"),
        broker=BrokerEndpoint(host="mqtt.example.com", port=8883, tls=True),
        data_dir="/var/lib/printermaster",
        platform="windows",
    )
    assert parse_config(text, "rendered").data_dir == WINDOWS_DATA_DIR
    assert "C:\\ProgramData\\printermaster\\agent.toml" in text  # where to save it


def test_provisioning_defaults_to_tls_outside_loopback() -> None:
    from cloud_api._settings import ApiSettings, MqttClientSettings, ProvisioningSettings
    from cloud_api.provisioning._render import BrokerEndpoint

    def endpoint(**prov: Any) -> BrokerEndpoint:
        settings = ApiSettings(
            api_token="t",
            mqtt=MqttClientSettings(username="u", password="p"),
            provisioning=ProvisioningSettings(**prov),
        )
        return BrokerEndpoint.from_settings(settings)

    assert not endpoint().tls  # the API's own loopback broker: plain is fine
    remote = endpoint(host="mqtt.example.com", port=1883)
    assert remote.tls and remote.port == 1883
    with_listener = endpoint(host="203.0.113.7", tls_port=8883)
    assert with_listener.tls and with_listener.port == 8883
    assert not endpoint(host="mqtt.example.com", tls=False).tls  # only when asked for


def test_cli_defaults_to_tls_for_a_remote_broker(stack: Stack, tmp_path: Path) -> None:
    branch_id = unique_id("b")
    remote, plain, local = unique_id("a"), unique_id("a"), unique_id("a")
    configs = {}
    for agent_id, extra in (
        (remote, ["--broker-host", "mqtt.example.com"]),
        (plain, ["--broker-host", "mqtt.example.com", "--no-tls"]),
        (local, []),
    ):
        added = _cli(stack, "add", "--branch", branch_id, "--agent", agent_id, *extra)
        assert added.returncode == 0, added.stderr
        configs[agent_id] = parse_config(added.stdout)
        assert _cli(stack, "revoke", "--branch", branch_id, "--agent", agent_id).returncode == 0
    assert configs[remote].mqtt.tls and not configs[plain].mqtt.tls
    assert not configs[local].mqtt.tls  # the state directory's own loopback broker


def test_a_batch_of_agents_is_split_under_the_brokers_message_size() -> None:
    """1,000 agents' commands (their roles with every ACL, their pinned logins) go out in
    control messages the broker accepts: a payload over ``message_size_limit`` makes it drop
    the admin's connection, and the batch would time out."""
    import json

    from broker import Credentials, agent_role, agent_username
    from broker._dynsec import agent_client_commands, control_chunks
    from protocol import MAX_PAYLOAD_BYTES

    commands = []
    for i in range(1000):
        branch, agent = f"f{i // 10:03d}", f"a{i:04d}"
        creds = Credentials(agent_username(branch, agent), "p" * 32)
        commands.extend(agent_client_commands(agent_role(branch, agent), creds))
    chunks = control_chunks(commands, 500)
    assert [c for chunk in chunks for c in chunk] == commands  # all, in order
    for chunk in chunks:
        sent = [{**c, "correlationData": str(10**6)} for c in chunk]
        assert len(json.dumps({"commands": sent})) < MAX_PAYLOAD_BYTES
        assert len(chunk) <= 500
    assert len(control_chunks(commands[:6], 4)) == 2
