"""Remote printer configuration end to end: the API stores and publishes it, the running agent
applies it without a restart, and its own refusals come back through its status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from broker import Credentials, Role, new_password
from cloud_api._errors import ApiError
from cloud_api._retained import publish_retained
from cloud_api._settings import MqttClientSettings
from printermaster.stack import AgentHandle, Stack
from protocol import ErrorCode, config_topic

from ._wait import eventually
from .conftest import AgentFactory, job_files, unique_id


def _url(agent: AgentHandle) -> str:
    return f"/v1/branches/{agent.branch_id}/agents/{agent.agent_id}/printers"


def _applied(http: httpx.Client, agent: AgentHandle, version: int) -> dict[str, Any] | None:
    view = http.get(_url(agent)).json()
    return view if view["applied_version"] == version else None


def _refused(http: httpx.Client, agent: AgentHandle, version: int) -> dict[str, Any] | None:
    view = http.get(_url(agent)).json()
    error = view["agent_error"]
    return view if error and error["version"] == version else None


def test_added_printer_prints_without_restart(
    stack: Stack, start_agent: AgentFactory, tmp_path: Path
) -> None:
    agent = start_agent(("POS-80C",))
    pid = agent.process.pid
    with stack.client(timeout=10) as http:
        before = http.get(_url(agent)).json()
        assert before["version"] == 0 and before["applied_version"] == 0
        assert [p["name"] for p in before["printers"]] == ["POS-80C"]

        kitchen = tmp_path / "kitchen"
        printers = [
            {"kind": "virtual", "name": "POS-80C"},
            {"kind": "virtual", "name": "KITCHEN", "directory": str(kitchen)},
        ]
        put = http.put(_url(agent), json={"printers": printers})
        assert put.status_code == 200, put.text
        version = put.json()["version"]
        assert version > 0

        view = eventually(
            lambda: _applied(http, agent, version),
            timeout=15,
            interval=0.05,
            what="the agent to apply it",
        )
        assert view["applied"] and view["agent_error"] is None
        # applied and reported: the very first test print goes through
        response = http.post(f"/v1/branches/{agent.branch_id}/printers/KITCHEN/test")
        assert response.status_code == 200, response.text
        assert response.json()["result"]["printer"] == "KITCHEN"
        assert [f.stem for f in kitchen.glob("*.prn")] == [response.json()["job_id"]]
        # the printer that did not change still prints; the agent never restarted
        ok = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test")
        assert ok.status_code == 200, ok.text
        assert agent.process.pid == pid and agent.process.running()

        # removed: the printer is gone at once, the other one stays
        put = http.put(_url(agent), json={"printers": [printers[1]]})
        removed = put.json()["version"]
        eventually(
            lambda: _applied(http, agent, removed), timeout=15, interval=0.05, what="the removal"
        )
        gone = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test?force=true")
        assert gone.status_code == 404, gone.text
        assert gone.json()["error"]["code"] == "PRINTER_NOT_FOUND"
        again = http.post(f"/v1/branches/{agent.branch_id}/printers/KITCHEN/test")
        assert again.status_code == 200, again.text
        assert agent.process.pid == pid


def test_agent_refuses_a_config_it_cannot_apply_and_keeps_the_old_one(
    stack: Stack, start_agent: AgentFactory, tmp_path: Path
) -> None:
    agent = start_agent(("POS-80C",))
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the printer's directory should be")
    with stack.client(timeout=10) as http:
        # Valid for the schema (the API accepts it), impossible on the agent's machine.
        bad = [{"kind": "virtual", "name": "BAR", "directory": str(blocker / "sub")}]
        put = http.put(_url(agent), json={"printers": bad})
        assert put.status_code == 200, put.text
        version = put.json()["version"]
        view = eventually(
            lambda: _refused(http, agent, version),
            timeout=15,
            interval=0.05,
            what="the agent's refusal",
        )
        assert view["applied_version"] == 0 and not view["applied"]
        error = view["agent_error"]["error"]
        assert error["code"] == "CONFIG_INVALID"
        assert "BAR" in error["message"]
        # the old printers are still there and print
        ok = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test")
        assert ok.status_code == 200, ok.text
        assert len(job_files(agent)) == 1
        agents = http.get(f"/v1/branches/{agent.branch_id}/agents").json()
        assert agents[0]["config_error"]["version"] == version


def test_api_refuses_a_list_the_agent_schema_refuses(
    stack: Stack, start_agent: AgentFactory
) -> None:
    agent = start_agent(("POS-80C",))
    with stack.client(timeout=10) as http:
        cases: list[list[dict[str, Any]]] = [
            [{"kind": "laser", "name": "X"}],
            [{"kind": "network", "name": "X"}],  # host missing
            [{"kind": "virtual", "name": "A"}, {"kind": "virtual", "name": "A"}],
            [{"kind": "virtual", "name": "bad name"}],
            [{"kind": "network", "name": "N", "host": "127.0.0.1", "port": 70000}],
        ]
        for printers in cases:
            response = http.put(_url(agent), json={"printers": printers})
            assert response.status_code == 422, (printers, response.text)
            assert response.json()["error"]["code"] == "INVALID_REQUEST"
        assert http.get(_url(agent)).json()["version"] == 0


def test_applied_config_survives_an_agent_restart(
    stack: Stack, start_agent: AgentFactory, tmp_path: Path
) -> None:
    agent = start_agent(("POS-80C",))
    with stack.client(timeout=10) as http:
        printers = [{"kind": "virtual", "name": "BAR", "directory": str(tmp_path / "bar")}]
        version = http.put(_url(agent), json={"printers": printers}).json()["version"]
        eventually(
            lambda: _applied(http, agent, version),
            timeout=15,
            interval=0.05,
            what="the agent to apply it",
        )
        agent.process.stop()
        stack.wait_agent(agent.branch_id, agent.agent_id, online=False)
        agent.process.start()
        stack.wait_agent(agent.branch_id, agent.agent_id)
        view = eventually(
            lambda: _applied(http, agent, version),
            timeout=15,
            interval=0.05,
            what="the applied version after restart",
        )
        assert view["applied"]
        ok = http.post(f"/v1/branches/{agent.branch_id}/printers/BAR/test")
        assert ok.status_code == 200, ok.text


def test_other_chains_cannot_see_or_set_printers(stack: Stack, start_agent: AgentFactory) -> None:
    agent = start_agent(("POS-80C",), wait=False)
    with stack.client(timeout=10) as http:
        key = http.post("/v1/api-keys", json={"chain": "other", "branches": ["some-other-branch"]})
        assert key.status_code == 201, key.text
        token = key.json()["key"]
    with httpx.Client(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as other:
        assert other.get(_url(agent)).status_code == 404
        put = other.put(_url(agent), json={"printers": []})
        assert put.status_code == 404, put.text


def test_job_on_an_unchanged_printer_finishes_while_config_changes(
    stack: Stack, start_agent: AgentFactory, tmp_path: Path
) -> None:
    agent = start_agent(("POS-80C",))
    (agent.printer_dir("POS-80C") / "state.json").write_text('{"delay_s": 1.5}')
    with stack.client(timeout=10) as http:
        job = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test?wait=false")
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        eventually(
            lambda: http.get(f"/v1/jobs/{job_id}").json()["state"] == "printing",
            timeout=15,
            interval=0.05,
            what="the job to start printing",
        )
        printers = [
            {"kind": "virtual", "name": "POS-80C"},
            {"kind": "virtual", "name": "KITCHEN", "directory": str(tmp_path / "k")},
        ]
        version = http.put(_url(agent), json={"printers": printers}).json()["version"]
        eventually(
            lambda: _applied(http, agent, version),
            timeout=15,
            interval=0.05,
            what="the agent to apply it",
        )
        final = eventually(
            lambda: (
                (j := http.get(f"/v1/jobs/{job_id}").json())["state"]
                in ("printed", "failed", "outcome_unknown")
                and j
            ),
            timeout=15,
            interval=0.05,
            what="the job to end",
        )
        assert final["state"] == "printed"
        assert [f.stem for f in job_files(agent)] == [job_id]


async def test_a_publish_the_broker_refuses_is_an_error_not_a_silent_success(
    stack: Stack,
) -> None:
    """Mosquitto answers a publish its ACL denies with PUBACK 0x87 and drops it; aiomqtt resolves
    the publish all the same. A cloud role without the fleet rules (a broker set up before them)
    must make PUT fail, not report a configuration stored that no agent will ever get."""
    name = unique_id("nobody")
    creds = Credentials(name, new_password())
    async with stack.admin() as admin:
        await admin.create_role(Role(f"pm-{name}", ()))
        await admin.create_client(creds, [f"pm-{name}"])
    topic = config_topic(unique_id("b"), unique_id("a"))
    denied = MqttClientSettings(port=stack.mqtt_port, username=name, password=creds.password)
    with pytest.raises(ApiError) as info:
        await publish_retained(denied, "test", topic, b"{}")
    assert info.value.code is ErrorCode.BROKER_UNAVAILABLE
    assert "refused" in info.value.message
    cloud = stack.creds("cloud")
    allowed = MqttClientSettings(
        port=stack.mqtt_port, username=cloud.username, password=cloud.password
    )
    await publish_retained(allowed, "test", topic, b"")


def test_removed_printer_finishes_its_job_and_fails_the_waiting_ones(
    stack: Stack, start_agent: AgentFactory, tmp_path: Path
) -> None:
    agent = start_agent(("POS-80C",))
    (agent.printer_dir("POS-80C") / "state.json").write_text('{"delay_s": 1.5}')
    test = f"/v1/branches/{agent.branch_id}/printers/POS-80C/test?wait=false"
    with stack.client(timeout=10) as http:
        first = http.post(test).json()["id"]
        eventually(
            lambda: _state(http, first) == "printing",
            timeout=15,
            interval=0.05,
            what="the first job to print",
        )
        second = http.post(test).json()["id"]
        eventually(
            lambda: _state(http, second) == "accepted",
            timeout=15,
            interval=0.05,
            what="the second job to wait",
        )
        printers = [{"kind": "virtual", "name": "KITCHEN", "directory": str(tmp_path / "k")}]
        version = http.put(_url(agent), json={"printers": printers}).json()["version"]
        eventually(
            lambda: _applied(http, agent, version),
            timeout=15,
            interval=0.05,
            what="the agent to apply it",
        )
        done = eventually(
            lambda: all(_state(http, j) in ("printed", "failed") for j in (first, second)),
            timeout=15,
            interval=0.05,
            what="both jobs to end",
        )
        assert done
        assert _state(http, first) == "printed"
        failed = http.get(f"/v1/jobs/{second}").json()
        assert failed["state"] == "failed"
        assert failed["error"]["code"] == "PRINTER_NOT_FOUND"
        assert [f.stem for f in job_files(agent)] == [first]


def _state(http: httpx.Client, job_id: str) -> str:
    return str(http.get(f"/v1/jobs/{job_id}").json()["state"])


def test_delete_hands_the_printers_back_to_the_toml(
    stack: Stack, start_agent: AgentFactory, tmp_path: Path
) -> None:
    agent = start_agent(("POS-80C",))
    pid = agent.process.pid
    with stack.client(timeout=10) as http:
        printers = [{"kind": "virtual", "name": "BAR", "directory": str(tmp_path / "bar")}]
        version = http.put(_url(agent), json={"printers": printers}).json()["version"]
        eventually(
            lambda: _applied(http, agent, version),
            timeout=15,
            interval=0.05,
            what="the agent to apply it",
        )
        cleared = http.delete(_url(agent))
        assert cleared.status_code == 200, cleared.text
        back = cleared.json()["version"]
        assert back > version and cleared.json()["local"]
        view = eventually(
            lambda: _applied(http, agent, back),
            timeout=15,
            interval=0.05,
            what="the TOML's printers again",
        )
        assert view["local"] and [p["name"] for p in view["printers"]] == ["POS-80C"]
        ok = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test")
        assert ok.status_code == 200, ok.text
        assert agent.process.pid == pid
        # a restart keeps the TOML's printers (the hand-back is kept like any configuration)
        agent.process.stop()
        stack.wait_agent(agent.branch_id, agent.agent_id, online=False)
        agent.process.start()
        stack.wait_agent(agent.branch_id, agent.agent_id)
        eventually(
            lambda: _applied(http, agent, back),
            timeout=15,
            interval=0.05,
            what="the same version after restart",
        )
        # and a new configuration applies as before
        version = http.put(_url(agent), json={"printers": printers}).json()["version"]
        eventually(
            lambda: _applied(http, agent, version),
            timeout=15,
            interval=0.05,
            what="the agent to apply it again",
        )
