"""Attacks by someone holding one agent's password, with stock clients (``mosquitto_sub``) and
paho: client-id takeover, forged results, printer hijack, junk floods. Each is refused by the
broker or ignored by the API, and the victims keep working."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import Credentials, Provisioner, agent_username
from printermaster.stack import Stack
from protocol import (
    Accepted,
    Done,
    PrintResult,
    encode,
    presence_topic,
    reply_topic,
    request_topic,
    status_topic,
)

from ._mqtt import NOT_AUTHORIZED, Probe
from ._wait import eventually
from .conftest import AgentFactory, job_files, make_stack, unique_id


def provision(stack: Stack, *pairs: tuple[str, str]) -> list[Credentials]:
    async def go() -> list[Credentials]:
        async with stack.admin() as admin:
            prov = Provisioner(admin)
            return [await prov.add_agent(b, a) for b, a in pairs]

    return asyncio.run(go())


def mosquitto_sub(stack: Stack, creds: Credentials, client_id: str, *extra: str) -> tuple[int, str]:
    """A stock ``mosquitto_sub`` with ``creds`` under ``client_id``: (exit code, stderr)."""
    result = subprocess.run(
        [
            "mosquitto_sub",
            *("-h", "127.0.0.1", "-p", str(stack.mqtt_port), "-V", "mqttv5"),
            *("-u", creds.username, "-P", creds.password, "-i", client_id),
            *("-t", "pm/v1/x", "-W", "1", *extra),
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return result.returncode, result.stderr


def api_log(stack: Stack) -> str:
    return (stack.state_dir / "api.log").read_text(errors="replace")


def test_client_id_takeover_is_refused_and_the_victims_stay_connected(
    stack: Stack, start_agent: AgentFactory
) -> None:
    b1, b2 = unique_id("b"), unique_id("b")
    ids = [(b1, unique_id("a")), (b1, unique_id("a")), (b2, unique_id("a"))]
    attacker, same_branch, other_branch = provision(stack, *ids)
    victims = {"same branch": same_branch, "other branch": other_branch}
    probes = {name: Probe(stack.mqtt_port, creds) for name, creds in victims.items()}
    for probe in probes.values():
        assert probe.connect() == 0
    real = start_agent()  # the API's session is a victim too: it must keep serving
    log_before = len(api_log(stack))
    targets = {**{n: c.username for n, c in victims.items()}, "the API": "cloud-api-1"}
    refused: dict[str, tuple[int, str]] = {}
    try:
        # positive control: the attacker's own login under its own client id
        assert mosquitto_sub(stack, attacker, attacker.username)[0] in (0, 27)
        for name, client_id in targets.items():
            # a fresh session, and one that resumes (clean start off): either would have
            # kicked the victim off, the second destroyed the requests queued for it
            refused[f"{name}"] = mosquitto_sub(stack, attacker, client_id)
            refused[f"{name}, -c"] = mosquitto_sub(stack, attacker, client_id, "-c", "-x", "60")
            paho = Probe(stack.mqtt_port, attacker, client_id=client_id)
            refused[f"{name}, paho"] = (paho.connect(), "")
        print(refused)
        for name, (code, stderr) in refused.items():
            if name.endswith("paho"):
                assert code == NOT_AUTHORIZED, (name, code)
            else:
                assert code == NOT_AUTHORIZED and "Not authorized" in stderr, (name, code, stderr)
        for name, probe in probes.items():
            assert not probe.wait_disconnect(0.2), f"victim ({name}) was disconnected"
        with stack.client(timeout=10) as http:
            response = http.post(f"/v1/branches/{real.branch_id}/printers/POS-80C/test")
        assert response.status_code == 200, response.text
        assert "broker connection lost" not in api_log(stack)[log_before:]
    finally:
        for probe in probes.values():
            probe.close()


def test_a_forged_done_from_another_agent_of_the_branch_changes_nothing(
    stack: Stack, start_agent: AgentFactory
) -> None:
    """Agent B of the same branch answers agent A's jobs: on A's reply topic the broker refuses
    it, on its own the API ignores it (logged once). A test print in flight still waits for A's
    real page; a job that was never sent (its agent offline) stays queued."""
    real = start_agent()
    forger_id = unique_id("a")
    (forger_creds,) = provision(stack, (real.branch_id, forger_id))
    forger = Probe(stack.mqtt_port, forger_creds)
    assert forger.connect() == 0
    try:
        # a job that was never sent: the agent is offline, the job waits queued
        real.process.stop()
        stack.wait_agent(real.branch_id, real.agent_id, online=False)
        with stack.client(timeout=10) as http:
            queued = http.post(
                "/v1/jobs",
                json={
                    "branch_id": real.branch_id,
                    "printer_id": "POS-80C",
                    "content": {"type": "raw", "data": "aGVsbG8="},
                    "expire_after": 600,
                },
            )
            assert queued.status_code == 202, queued.text
            job_id = queued.json()["id"]
            assert queued.json()["state"] == "queued"
            correlation = job_id.encode()
            done = Done(
                job_id=job_id,
                at=time.time(),
                result=PrintResult(printer="POS-80C", bytes=1, duration_ms=0.0),
            )
            own = reply_topic(real.branch_id, "api-1", forger_id)
            victims = reply_topic(real.branch_id, "api-1", real.agent_id)
            assert forger.publish(victims, encode(done), correlation=correlation) == NOT_AUTHORIZED
            for reply in (Accepted(job_id=job_id, at=time.time()), done):
                assert forger.publish(own, encode(reply), correlation=correlation) in (0, 16)
            line = f"dropping reply for job {job_id} from agent {forger_id}"
            eventually(lambda: api_log(stack).count(line) == 2, what="two drops logged")
            job = http.get(f"/v1/jobs/{job_id}").json()
            assert job["state"] == "queued", job
            assert [e["state"] for e in job["timeline"]] == ["queued"]
            # the real agent comes back and prints it: its reply counts
            real.process.start()
            eventually(
                lambda: http.get(f"/v1/jobs/{job_id}").json()["state"] == "printed",
                timeout=20,
                what="the real agent printed the job",
            )
        assert [f.stem for f in job_files(real)] == [job_id]
        assert api_log(stack).count(line) == 2  # one line per forged reply, never more
    finally:
        forger.close()


def test_the_forger_cannot_reach_the_agents_requests_either(stack: Stack) -> None:
    """B may not read A's requests (the content of A's tickets) nor send A requests."""
    b = unique_id("b")
    a, bb = unique_id("a"), unique_id("a")
    _, forger_creds = provision(stack, (b, a), (b, bb))
    forger = Probe(stack.mqtt_port, forger_creds)
    assert forger.connect() == 0
    try:
        assert forger.subscribe(request_topic(b, a)) == NOT_AUTHORIZED
        assert forger.publish(request_topic(b, a), b"{}") == NOT_AUTHORIZED
        assert forger_creds.username == agent_username(b, bb)
    finally:
        forger.close()


def test_a_junk_flood_from_one_agent_costs_a_bounded_number_of_log_lines(
    tmp_path: Path,
) -> None:
    """15,000 junk messages from one stolen login (bad status and presence, replies with junk,
    unknown jobs and no correlation): the API stays ready, serves the other branches, drops what
    is over the agent's rate (counted in /metrics) and logs a few dozen lines, not thousands."""
    with make_stack(tmp_path, mqtt_rate_per_agent=200.0, mqtt_burst_per_agent=500) as stack:
        real = stack.add_agent("b-ok", "a-ok", ["POS-80C"])
        stack.wait_agent("b-ok", "a-ok")
        (creds,) = provision(stack, ("b-junk", "a-junk"))
        flooder = Probe(stack.mqtt_port, creds)
        assert flooder.connect() == 0
        lines_before = len(api_log(stack).splitlines())
        topics = [
            status_topic("b-junk", "a-junk"),
            presence_topic("b-junk", "a-junk"),
            reply_topic("b-junk", "api-1", "a-junk"),
        ]
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = b"no-such-job"
        try:
            for i in range(15_000):
                topic = topics[i % 3]
                payload = b"\xff junk %d" % i if i % 2 else b'{"stage":"done","v":1}'
                flooder.client.publish(topic, payload, qos=0, properties=props)
                if i % 1000 == 0:
                    assert httpx.get(f"{stack.api_url}/readyz").status_code == 200
            assert flooder.publish(topics[0], b"last") in (0, 16)  # all of it reached the broker
            with stack.client(timeout=30) as http:
                response = http.post("/v1/branches/b-ok/printers/POS-80C/test")
                assert response.status_code == 200, response.text

                def dropped() -> float:
                    text = http.get("/metrics").text
                    line = next(
                        x for x in text.splitlines() if x.startswith("printermaster_mqtt_dropped")
                    )
                    return float(line.split()[-1])

                eventually(lambda: dropped() > 1000, what="the flood dropped and counted")
                count = dropped()
            assert httpx.get(f"{stack.api_url}/readyz").status_code == 200
        finally:
            flooder.close()
            real.process.stop()
        added = api_log(stack).splitlines()[lines_before:]
        print(f"{len(added)} log lines for 15,000 junk messages; dropped {count:.0f}")
        assert len(added) < 300, "\n".join(added[-20:])


def test_rotating_an_agent_of_an_older_release_binds_its_client_id(stack: Stack) -> None:
    """An agent login made before client ids were bound (its role writing the whole branch's
    reply/+, no clientid, no doctor login) is brought up to date by a rotation."""
    from broker import Acl, Role, agent_role, agent_role_name

    b, a = unique_id("b"), unique_id("a")
    old_role = Role(
        agent_role_name(b, a),
        (
            Acl("subscribePattern", f"{request_topic(b, a)}/#"),
            Acl("publishClientReceive", f"{request_topic(b, a)}/#"),
            Acl("publishClientSend", presence_topic(b, a)),
            Acl("publishClientSend", status_topic(b, a)),
            Acl("publishClientSend", f"pm/v1/{b}/reply/+"),
        ),
    )

    async def go() -> tuple[Credentials, dict[str, object], dict[str, object]]:
        async with stack.admin() as admin:
            await admin.create_role(old_role)
            await admin.create_client(Credentials(agent_username(b, a), "old"), [old_role.name])
            creds = await Provisioner(admin).rotate_agent(b, a)
            return (
                creds,
                await admin.get_client(creds.username),
                await admin.get_role(old_role.name),
            )

    creds, client, role = asyncio.run(go())
    assert client["clientid"] == creds.username
    rules = {(acl["acltype"], acl["topic"]) for acl in role["acls"]}  # type: ignore[attr-defined]
    assert rules == {(acl.acltype, acl.topic) for acl in agent_role(b, a).acls}
    assert mosquitto_sub(stack, creds, "cloud-api-1")[0] == NOT_AUTHORIZED
    doctor = Credentials(f"{creds.username}:doctor", creds.password)
    assert mosquitto_sub(stack, doctor, doctor.username)[0] in (0, 27)


def test_the_upgrade_command_binds_older_logins_without_new_passwords(stack: Stack) -> None:
    import sys

    from broker import Acl, Role, agent_role, agent_role_name

    b, a = unique_id("b"), unique_id("a")
    old_role = Role(agent_role_name(b, a), (Acl("publishClientSend", f"pm/v1/{b}/reply/+"),))
    old = Credentials(agent_username(b, a), "old-password")

    async def create() -> None:
        async with stack.admin() as admin:
            await admin.create_role(old_role)
            await admin.create_client(old, [old_role.name])

    asyncio.run(create())
    assert mosquitto_sub(stack, old, "cloud-api-1")[0] != NOT_AUTHORIZED  # the old hole
    done = subprocess.run(
        [
            *(sys.executable, "-m", "printermaster", "broker", "provision", "upgrade"),
            *("--state-dir", str(stack.state_dir), "--branch", b),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [b, a, "upgraded"]

    async def read() -> dict[str, object]:
        async with stack.admin() as admin:
            return await admin.get_role(old_role.name)

    rules = {(acl["acltype"], acl["topic"]) for acl in read_acls(asyncio.run(read()))}
    assert rules == {(acl.acltype, acl.topic) for acl in agent_role(b, a).acls}
    assert mosquitto_sub(stack, old, "cloud-api-1")[0] == NOT_AUTHORIZED
    assert mosquitto_sub(stack, old, old.username)[0] in (0, 27)  # same password, own id


def read_acls(role: dict[str, object]) -> list[dict[str, str]]:
    acls = role.get("acls", [])
    assert isinstance(acls, list)
    return acls
