"""Branch isolation against the real broker and its generated config: what one agent's login may
and may not do to other agents, other branches, the cloud and the broker itself; forged replies;
logins that must be refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any

import httpx

from broker import Credentials, Provisioner, agent_username
from printermaster.stack import Stack
from protocol import (
    Done,
    Failed,
    PrintResult,
    encode,
    error_info,
    presence_topic,
    reply_topic,
    request_topic,
    status_topic,
)
from protocol import ErrorCode as E

from ._mqtt import NOT_AUTHORIZED, Probe
from ._wait import eventually
from .conftest import AgentFactory, job_files, unique_id


def provision(stack: Stack, *pairs: tuple[str, str]) -> list[Credentials]:
    async def go() -> list[Credentials]:
        async with stack.admin() as admin:
            prov = Provisioner(admin)
            return [await prov.add_agent(b, a) for b, a in pairs]

    return asyncio.run(go())


def revoke(stack: Stack, branch_id: str, agent_id: str) -> None:
    async def go() -> None:
        async with stack.admin() as admin:
            await Provisioner(admin).revoke_agent(branch_id, agent_id)

    asyncio.run(go())


def test_acl_matrix_agent_reaches_nothing_but_its_own_topics(stack: Stack, observer: Probe) -> None:
    b1, b2 = unique_id("b"), unique_id("b")
    a1, a2, a3 = unique_id("a"), unique_id("a"), unique_id("a")
    creds_a, _, _ = provision(stack, (b1, a1), (b1, a2), (b2, a3))
    other = {
        "B (same branch)": (b1, a2),
        "C (branch 2)": (b2, a3),
    }
    sub_refused = [f"{who} {kind}" for who in other for kind in ("req", "presence", "status")]
    sub_topics = {
        f"{who} {kind}": builder(*ids)
        for who, ids in other.items()
        for kind, builder in (
            ("req", request_topic),
            ("presence", presence_topic),
            ("status", status_topic),
        )
    }
    sub_topics |= {
        "cloud reply, own": reply_topic(b1, "api-1", a1),
        "cloud reply, B": reply_topic(b1, "api-1", a2),
        "cloud reply, branch 2": reply_topic(b2, "api-1", a3),
        "every reply": "pm/v1/+/reply/+/+",
        "own branch #": f"pm/v1/{b1}/#",
        "every request": "pm/v1/+/agents/+/req",
        "all presence": "pm/v1/+/agents/+/presence",
        "pm/v1/#": "pm/v1/#",
        "#": "#",
        "+/#": "+/#",
        "$CONTROL/#": "$CONTROL/#",
        "dynsec responses": "$CONTROL/dynamic-security/v1/response",
        "$SYS/#": "$SYS/#",
    }
    sub_refused += [k for k in sub_topics if k not in sub_refused]
    ghost = unique_id("ghost")
    create_ghost = json.dumps(
        {"commands": [{"command": "createClient", "username": ghost, "password": "x"}]}
    ).encode()
    pub_topics = {
        f"{who} {kind}": builder(*ids)
        for who, ids in other.items()
        for kind, builder in (
            ("req", request_topic),
            ("presence", presence_topic),
            ("status", status_topic),
        )
    } | {
        "own req (inject a job)": request_topic(b1, a1),
        "reply, branch 2": reply_topic(b2, "api-1", a3),
        "reply as B (same branch)": reply_topic(b1, "api-1", a2),
        "reply, own id in branch 2": reply_topic(b2, "api-1", a1),
        "reply without agent": f"pm/v1/{b1}/reply/api-1",
        "own agent, unknown leaf": f"pm/v1/{b1}/agents/{a1}/x",
        "outside the tree": "foo/bar",
        "$CONTROL createClient": "$CONTROL/dynamic-security/v1",
        "$SYS": "$SYS/broker/uptime",
    }
    rows: list[tuple[str, str, str, str, bool]] = []
    agent = Probe(stack.mqtt_port, creds_a)
    assert agent.connect() == 0
    try:
        # positive controls: the same login can do its own job
        own_sub = agent.subscribe(request_topic(b1, a1))
        rows.append(("SUB", "own req", request_topic(b1, a1), f"{own_sub}", own_sub == 1))
        for what, topic in sub_topics.items():
            code = agent.subscribe(topic)
            rows.append(("SUB", what, topic, hex(code), code == NOT_AUTHORIZED))
        started = time.monotonic()
        for what, topic in pub_topics.items():
            payload = create_ghost if topic.startswith("$CONTROL") else b'{"forged":true}'
            code = agent.publish(topic, payload)
            rows.append(("PUB", what, topic, str(code), code == NOT_AUTHORIZED))
        for what, topic in (
            ("own presence", presence_topic(b1, a1)),
            ("own reply topic", reply_topic(b1, "api-1", a1)),
        ):
            code = agent.publish(topic, b"{}")
            rows.append(("PUB", what, topic, str(code), code in (0, 16)))
        # the controls were published last on the same connection: once the observer has them,
        # a forged message that got through would have arrived before them (MQTT keeps order)
        controls = {presence_topic(b1, a1), reply_topic(b1, "api-1", a1)}
        with contextlib.suppress(AssertionError):  # the SEEN rows below record a miss
            eventually(
                lambda: (
                    controls
                    <= {m.topic for m in observer.messages if not m.retain and m.at >= started}
                ),
                timeout=5,
            )
        delivered = {m.topic for m in observer.messages if not m.retain and m.at >= started}
        for what, topic in pub_topics.items():
            rows.append(("SEEN", what, topic, str(topic in delivered), topic not in delivered))
        for topic in (presence_topic(b1, a1), reply_topic(b1, "api-1", a1)):
            rows.append(("SEEN", "control", topic, str(topic in delivered), topic in delivered))

        # the refused $CONTROL command did not run
        async def ghost_exists() -> bool:
            async with stack.admin() as admin:
                clients = await admin.list_clients()
            return any(c.get("username") == ghost for c in clients)

        exists = asyncio.run(ghost_exists())
        rows.append(("CTRL", "client created via $CONTROL", ghost, str(exists), not exists))
        # the agent is still connected: refusals are answers, not disconnects
        rows.append(("CONN", "still connected", "", str(not agent._gone.is_set()), True))
    finally:
        agent.close()
    print(f"\nACL matrix for agent {agent_username(b1, a1)} (expected refusals: 0x87 / 135)")
    for op, what, topic, got, ok in rows:
        print(f"  {'ok ' if ok else 'BAD'} {op:4} {what:28} {topic:52} -> {got}")
    bad = [r for r in rows if not r[4]]
    assert not bad, bad
    assert len([r for r in rows if r[0] == "SUB"]) == len(sub_topics) + 1


def test_forged_reply_from_another_branch_is_ignored(
    stack: Stack, start_agent: AgentFactory, observer: Probe
) -> None:
    """Branch 2's agent answers a pending branch-1 job with its correlation data on its own
    reply topic; the cloud drops it and the slow real agent's reply wins."""
    real = start_agent()
    (real.printer_dir("POS-80C") / "state.json").write_text('{"delay_s": 1.0}')
    b2, a2 = unique_id("b"), unique_id("a")
    (forger_creds,) = provision(stack, (b2, a2))
    forger = Probe(stack.mqtt_port, forger_creds)
    assert forger.connect() == 0
    result: dict[str, Any] = {}

    def call() -> None:
        with stack.client(timeout=30) as http:
            result["response"] = http.post(f"/v1/branches/{real.branch_id}/printers/POS-80C/test")

    req_topic = request_topic(real.branch_id, real.agent_id)
    started = time.monotonic()
    caller = threading.Thread(target=call)
    caller.start()
    try:
        eventually(
            lambda: any(m.topic == req_topic for m in observer.messages),
            timeout=5 - (time.monotonic() - started),
            interval=0.005,
            what="the request",
        )
        correlation = next(m.correlation for m in observer.messages if m.topic == req_topic)
        assert correlation
        job_id = correlation.decode()
        forged_done = Done(
            job_id=job_id,
            at=time.time(),
            result=PrintResult(printer="POS-80C", bytes=1, duration_ms=0.0),
        )
        forged_fail = Failed(job_id=job_id, at=time.time(), error=error_info(E.PAPER_OUT, "forged"))
        codes = [
            forger.publish(reply_topic(b2, "api-1", a2), encode(r), correlation=correlation)
            for r in (forged_fail, forged_done)
        ]
        # its own branch's reply topic is allowed (that is how it answers its own jobs) ...
        assert all(c in (0, 16) for c in codes), codes
        # ... branch 1's is not
        assert (
            forger.publish(
                reply_topic(real.branch_id, "api-1", real.agent_id),
                encode(forged_fail),
                correlation=correlation,
            )
            == NOT_AUTHORIZED
        )
        caller.join(30)
    finally:
        forger.close()
        caller.join(30)
    response: httpx.Response = result["response"]
    elapsed = time.monotonic() - started
    print(f"real reply after {elapsed:.2f} s; forged replies sent at once and ignored")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["job_id"] == job_id and body["status"] == "printed"
    assert body["result"]["bytes"] > 100  # the real page, not the forged 1 byte
    assert elapsed >= 1.0  # the answer waited for the slow real agent
    assert [f.stem for f in job_files(real)] == [job_id]


def test_anonymous_wrong_password_revoked_and_rotated_logins_are_refused(stack: Stack) -> None:
    b, a = unique_id("b"), unique_id("a")
    (creds,) = provision(stack, (b, a))
    outcomes: dict[str, int] = {}
    outcomes["anonymous"] = Probe(stack.mqtt_port, None, client_id="anon").connect()
    outcomes["wrong password"] = Probe(
        stack.mqtt_port, Credentials(creds.username, creds.password + "x")
    ).connect()
    outcomes["no such user"] = Probe(
        stack.mqtt_port, Credentials(agent_username(b, "nobody"), creds.password)
    ).connect()
    good = Probe(stack.mqtt_port, creds)
    outcomes["right password"] = good.connect()
    good.close()

    async def rotate() -> Credentials:
        async with stack.admin() as admin:
            return await Provisioner(admin).rotate_agent(b, a)

    rotated = asyncio.run(rotate())
    outcomes["rotated-away password"] = Probe(stack.mqtt_port, creds).connect()
    fresh = Probe(stack.mqtt_port, rotated)
    outcomes["new password"] = fresh.connect()
    fresh.close()
    revoke(stack, b, a)
    outcomes["revoked"] = Probe(stack.mqtt_port, rotated).connect()
    print(outcomes)
    assert outcomes.pop("right password") == 0
    assert outcomes.pop("new password") == 0
    # 0x86 bad user name or password / 0x87 not authorized
    assert all(code in (0x86, 0x87) for code in outcomes.values()), outcomes


def test_revoked_connected_agent_is_disconnected_within_one_second(stack: Stack) -> None:
    b, a = unique_id("b"), unique_id("a")
    (creds,) = provision(stack, (b, a))
    probe = Probe(stack.mqtt_port, creds)
    assert probe.connect() == 0
    started = time.monotonic()
    revoke(stack, b, a)
    assert probe.wait_disconnect(5)
    assert probe.disconnected_at is not None
    took = probe.disconnected_at - started
    print(f"revoked agent disconnected {took * 1000:.0f} ms after revoke began")
    assert took < 1.0
    assert probe.disconnect_reason == 0x98  # administrative action
    probe.client.loop_stop()
