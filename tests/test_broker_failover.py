"""Agents on several independent brokers: kill -9 of the agent's broker while jobs flow; the
agent is online on the next broker within seconds, no job is lost or printed twice, and it
returns to its preferred broker once that one is back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from pathlib import Path

import aiomqtt
import httpx

from branch_agent import parse_config
from broker import free_port
from printermaster.stack import Stack

from ._wait import eventually
from .conftest import unique_id

FINAL = {"printed", "failed", "expired", "cancelled", "outcome_unknown"}


def _session(http: httpx.Client, branch: str, agent: str) -> int | None:
    """The agent's session as the API sees it, None while it is not online."""
    for view in http.get(f"/v1/branches/{branch}/agents").json():
        if view["agent_id"] == agent and view["online"]:
            return int(view["session"])
    return None


def _wait_new_session(http: httpx.Client, branch: str, agent: str, after: int) -> float:
    start = time.monotonic()
    eventually(
        lambda: (_session(http, branch, agent) or 0) > after,
        timeout=30,
        what=f"agent {agent} online in a session after {after}",
    )
    return time.monotonic() - start


def test_agent_fails_over_to_the_next_broker_and_back(tmp_path: Path) -> None:
    stack = Stack(
        tmp_path,
        mqtt_port=free_port(),
        http_port=free_port(),
        api_overrides={"resend_after": 2.0},
        tls=False,
        brokers=2,
    )
    with stack:
        stack.start_broker()
        stack.start_api()
        branch, agent_id = unique_id("b"), unique_id("a")
        agent = stack.add_agent(
            branch, agent_id, ["POS-80C"], start=False, mqtt={"failback_interval": 1.0}
        )
        printer_dir = agent.printer_dir("POS-80C")
        printer_dir.mkdir(parents=True, exist_ok=True)
        (printer_dir / "state.json").write_text(json.dumps({"delay_s": 0.02}))
        agent.process.start()
        stack.wait_agent(branch, agent_id)
        job_ids: list[str] = []
        stop = threading.Event()

        def submit() -> None:
            with stack.client(timeout=10) as http:
                n = 0
                while not stop.is_set():
                    n += 1
                    body = {
                        "branch_id": branch,
                        "printer_id": "POS-80C",
                        "content": {
                            "type": "document",
                            "blocks": [{"type": "text", "text": f"{n}"}],
                        },
                    }
                    answer = http.post("/v1/jobs", json=body)
                    assert answer.status_code == 202, answer.text
                    job_ids.append(answer.json()["id"])
                    time.sleep(0.03)

        with stack.client(timeout=10) as http:
            before = _session(http, branch, agent_id)
            assert before is not None
            feeder = threading.Thread(target=submit)
            feeder.start()
            try:
                time.sleep(1.0)  # not a wait: a second of jobs on their way when the broker dies
                stack.brokers[0].kill()  # kill -9 of the agent's (preferred) broker
                took = _wait_new_session(http, branch, agent_id, before)
                time.sleep(1.0)  # not a wait: and a second of jobs after the failover
            finally:
                stop.set()
                feeder.join()
            print(f"online on the second broker {took:.2f} s after the kill, {len(job_ids)} jobs")
            assert took < 5.0
            second = f"connected to 127.0.0.1:{stack.broker_ports[1]}"
            assert second in agent.process.log_path.read_text()
            states: dict[str, str] = {}

            def all_final() -> bool:
                states.update({j: http.get(f"/v1/jobs/{j}").json()["state"] for j in job_ids})
                return set(states.values()) <= FINAL

            with contextlib.suppress(AssertionError):  # the assertion below counts the states
                eventually(all_final, timeout=40, interval=0.3)
            assert set(states.values()) == {"printed"}, Counter(states.values())
            journal = Counter((printer_dir / "journal.log").read_text().split())
            assert set(journal) == set(job_ids) and set(journal.values()) == {1}
            # the preferred broker comes back: the agent returns to it
            on_second = _session(http, branch, agent_id)
            assert on_second is not None
            stack.brokers[0].start()
            _wait_new_session(http, branch, agent_id, on_second)
            assert "moving back to it" in agent.process.log_path.read_text()
            test = http.post(f"/v1/branches/{branch}/printers/POS-80C/test")
            assert test.status_code == 200 and test.json()["status"] == "printed", test.text


async def _login_works(port: int, username: str, password: str) -> bool:
    client = aiomqtt.Client(
        "127.0.0.1",
        port,
        username=username,
        password=password,
        identifier=username,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
    )
    try:
        async with client:
            return True
    except aiomqtt.MqttError:
        return False


def test_provisioning_creates_and_revokes_the_login_on_every_broker(tmp_path: Path) -> None:
    stack = Stack(tmp_path, mqtt_port=free_port(), http_port=free_port(), tls=False, brokers=2)
    with stack:
        stack.start_broker()
        stack.start_api()
        branch, agent_id = unique_id("b"), unique_id("a")
        with stack.client(timeout=20) as http:
            answer = http.post(f"/v1/branches/{branch}/agents", json={"agent_id": agent_id})
            assert answer.status_code == 201, answer.text
            config = parse_config(answer.text, "provisioned")
            ports = [e.port for e in config.mqtt.endpoints()]
            assert ports == stack.broker_ports  # in the deployment's order of preference
            mqtt = config.mqtt
            for port in ports:
                assert asyncio.run(_login_works(port, mqtt.username, mqtt.password)), port
            revoked = http.delete(f"/v1/branches/{branch}/agents/{agent_id}")
            assert revoked.status_code in (200, 204), revoked.text
            for port in ports:
                assert not asyncio.run(_login_works(port, mqtt.username, mqtt.password)), port


def test_doctor_checks_every_broker_of_the_list(tmp_path: Path) -> None:
    from .test_doctor import doctor

    with Stack(tmp_path, mqtt_port=free_port(), http_port=free_port(), tls=False, brokers=2) as s:
        s.start_broker()
        handle = s.add_agent("b1", "a1", ["POS-80C"], start=False)
        rc, out = doctor(handle.config_path)
        assert rc == 0, out
        first, second = s.broker_ports
        assert f"127.0.0.1:{first} (1 of 2)" in out and f"127.0.0.1:{second} (2 of 2)" in out
        assert out.count("[OK]   round trip") == 2, out
        s.brokers[1].stop()
        rc, out = doctor(handle.config_path)
    assert rc == 1
    after_second = out.split(f"127.0.0.1:{second} (2 of 2)", 1)[1]
    assert "refused the connection" in after_second and "[OK]   round trip" in out


def test_cli_provisioning_with_also_covers_every_broker(tmp_path: Path) -> None:
    import subprocess
    import sys

    with Stack(tmp_path, mqtt_port=free_port(), http_port=free_port(), tls=False, brokers=2) as s:
        s.start_broker()
        first, second = s.broker_ports

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "printermaster", "broker", "provision", args[0]]
            also = ["--state-dir", str(s.state_dir), "--also", f"127.0.0.1:{second}"]
            return subprocess.run(
                [*command, *also, *args[1:]],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        ids = ["--branch", "b1", "--agent", "a1"]
        added = cli("add", *ids)
        assert added.returncode == 0, added.stderr
        mqtt = parse_config(added.stdout, "cli").mqtt
        assert [e.port for e in mqtt.endpoints()] == [first, second]
        for port in (first, second):
            assert asyncio.run(_login_works(port, mqtt.username, mqtt.password)), port
        rotated = cli("rotate", *ids)
        assert rotated.returncode == 0, rotated.stderr
        new = parse_config(rotated.stdout, "cli").mqtt
        for port in (first, second):
            assert asyncio.run(_login_works(port, new.username, new.password)), port
            assert not asyncio.run(_login_works(port, mqtt.username, mqtt.password)), port
        assert cli("revoke", *ids).returncode == 0
        for port in (first, second):
            assert not asyncio.run(_login_works(port, new.username, new.password)), port


def test_api_check_names_each_broker_and_the_store(tmp_path: Path) -> None:
    import subprocess
    import sys

    with Stack(tmp_path, mqtt_port=free_port(), http_port=free_port(), tls=False, brokers=2) as s:
        s.start_broker()
        s.start_api()
        config = str(tmp_path / "api.toml")

        def check() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "printermaster", "api", "--config", config, "--check"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        done = check()
        assert done.returncode == 0, done.stdout + done.stderr
        first, second = s.broker_ports
        for port in (first, second):
            assert f"[OK] broker 127.0.0.1:{port} as cloud" in done.stdout
            assert f"[OK] broker 127.0.0.1:{port} as admin (provisioning)" in done.stdout
        assert "[OK] store" in done.stdout
        s.brokers[1].stop()
        done = check()
        assert done.returncode == 1
        assert f"[FAIL] broker 127.0.0.1:{second} as cloud" in done.stdout
        assert f"[OK] broker 127.0.0.1:{first} as cloud" in done.stdout


def test_provisioning_repairs_a_login_made_on_one_broker_only(tmp_path: Path) -> None:
    from broker import Provisioner

    stack = Stack(tmp_path, mqtt_port=free_port(), http_port=free_port(), tls=False, brokers=2)
    with stack:
        stack.start_broker()
        stack.start_api()
        second = stack.brokers[1]

        async def on_second_only(branch: str, agent: str) -> None:
            async with stack.admin(second) as admin:
                await Provisioner(admin).add_agent(branch, agent)

        branch, agent_id = unique_id("b"), unique_id("a")
        asyncio.run(on_second_only(branch, agent_id))  # a change that failed half-way
        with stack.client(timeout=20) as http:
            answer = http.post(f"/v1/branches/{branch}/agents", json={"agent_id": agent_id})
            assert answer.status_code == 201, answer.text
            mqtt = parse_config(answer.text, "provisioned").mqtt
            for port in stack.broker_ports:  # one password on both
                assert asyncio.run(_login_works(port, mqtt.username, mqtt.password)), port
            assert http.delete(f"/v1/branches/{branch}/agents/{agent_id}").status_code < 300
            other = unique_id("a")
            asyncio.run(on_second_only(branch, other))
            removed = http.delete(f"/v1/branches/{branch}/agents/{other}")
            assert removed.status_code < 300, removed.text  # removed where it was
            again = http.delete(f"/v1/branches/{branch}/agents/{other}")
            assert again.status_code == 404, again.text


def test_each_broker_link_feeds_the_registry_and_notes_the_route() -> None:
    """What a broker's link reads (a presence, then a live status) reaches the shared
    registry, and a request to that agent is routed to that broker. No broker: the links'
    dispatch is called by hand, as paho would."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from cloud_api import ApiSettings
    from cloud_api._brokers import BrokerLinks
    from cloud_api._registry import Registry
    from cloud_api._settings import BrokerAddress, MqttClientSettings
    from protocol import AgentStatus, Presence, PrinterState, encode, presence_topic, status_topic

    mqtt = MqttClientSettings(
        username="u",
        password="p",
        brokers=[BrokerAddress(host="127.0.0.1", port=1), BrokerAddress(host="127.0.0.1", port=2)],
    )
    registry = Registry()
    links = BrokerLinks(ApiSettings(api_token="t", mqtt=mqtt), registry, lambda *_: None)
    second = links.links[1]
    second.ready.set()
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 90
    online = Presence(state="online", session=5, branch_id="b1", agent_id="a1")
    status = AgentStatus(
        branch_id="b1", agent_id="a1", session=5, at=time.time(), printers=[PrinterState(name="P")]
    )
    second.dispatch(aiomqtt.Message(presence_topic("b1", "a1"), encode(online), 1, False, 1, props))
    second.dispatch(aiomqtt.Message(status_topic("b1", "a1"), encode(status), 1, False, 2, props))
    record = registry.agent("b1", "a1")
    assert record is not None and record.online()
    assert links.broker_of("b1", "a1") == 1


def test_messages_dropped_on_any_broker_are_counted() -> None:
    """/metrics reads ``dropped`` and ``sessions`` of the API's link: with several brokers,
    what each broker's link dropped (an agent over its rate) and opened adds up there."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from cloud_api import ApiSettings
    from cloud_api._brokers import BrokerLinks
    from cloud_api._registry import Registry
    from cloud_api._settings import BrokerAddress, MqttClientSettings
    from protocol import AgentStatus, encode, status_topic

    mqtt = MqttClientSettings(
        username="u",
        password="p",
        brokers=[BrokerAddress(host="127.0.0.1", port=1), BrokerAddress(host="127.0.0.1", port=2)],
    )
    settings = ApiSettings(
        api_token="t", mqtt=mqtt, mqtt_rate_per_agent=0.001, mqtt_burst_per_agent=1
    )
    links = BrokerLinks(settings, Registry(), lambda *_: None)
    status = AgentStatus(branch_id="b1", agent_id="a1", session=1, at=time.time(), printers=[])
    topic = status_topic("b1", "a1")
    for n in range(3):
        message = aiomqtt.Message(
            topic, encode(status), 1, False, n, Properties(PacketTypes.PUBLISH)
        )
        links.links[1].dispatch(message)
    assert links.links[1].dropped == 2
    assert links.dropped == 2
    links.links[0].sessions, links.links[1].sessions = 1, 2  # broker sessions opened
    assert links.sessions == 3
