"""The walking skeleton end to end: HTTP -> API -> Mosquitto -> agent -> virtual printer -> back."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from printermaster.stack import Stack
from protocol import reply_topic, request_topic

from .conftest import AgentFactory, job_files


def test_print_returns_result_and_one_job_file(stack: Stack, start_agent: AgentFactory) -> None:
    agent = start_agent()
    with stack.client() as http:
        response = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "printed"
    assert body["agent_id"] == agent.agent_id
    assert body["result"]["printer"] == "POS-80C"
    assert body["result"]["bytes"] > 100
    timings = body["timings_ms"]
    # a fast printer: the agent answers with the final alone, no accepted on the way
    assert set(timings) == {"sent", "printed"}
    assert timings["sent"] <= timings["printed"]
    files = job_files(agent)
    assert [f.stem for f in files] == [body["job_id"]]
    page = files[0].read_bytes()
    assert body["result"]["bytes"] == len(page)
    for text in (agent.branch_id, agent.agent_id, "POS-80C", body["job_id"]):
        assert text.encode() in page
    assert page.endswith(b"\x1dVA\x00") or b"\x1dV" in page[-8:]  # ends with a cut


def test_thousand_sequential_prints_lose_nothing(stack: Stack, start_agent: AgentFactory) -> None:
    agent = start_agent()
    job_ids = []
    with stack.client(timeout=10) as http:
        for _ in range(1000):
            response = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test")
            assert response.status_code == 200, response.text
            job_ids.append(response.json()["job_id"])
    assert len(set(job_ids)) == 1000
    assert sorted(f.stem for f in job_files(agent)) == sorted(job_ids)


def test_concurrent_requests_never_cross_replies(stack: Stack, start_agent: AgentFactory) -> None:
    """The legacy race as a regression test: an agent answering with zero processing time, 200
    requests at once, every caller gets its own reply."""
    agent = start_agent()
    url = f"/v1/branches/{agent.branch_id}/printers/POS-80C/test"

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(
            base_url=stack.api_url,
            limits=limits,
            timeout=30,
            headers={"Authorization": f"Bearer {stack.api_token}"},
        ) as c:
            return await asyncio.gather(*(c.post(url) for _ in range(200)))

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 200
    job_ids = [r.json()["job_id"] for r in responses]
    assert len(set(job_ids)) == 200
    files = {f.stem: f.read_bytes() for f in job_files(agent)}
    assert set(files) == set(job_ids)
    for job_id in job_ids:  # each reply belongs to the page that printed that job id
        assert job_id.encode() in files[job_id]


def test_offline_agent_answers_503_at_once(stack: Stack, start_agent: AgentFactory) -> None:
    agent = start_agent()
    agent.process.stop()
    stack.wait_agent(agent.branch_id, agent.agent_id, online=False, timeout=2)
    with stack.client() as http:
        started = time.perf_counter()
        response = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test")
        elapsed = time.perf_counter() - started
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "AGENT_OFFLINE" and error["retryable"] is True
    assert elapsed < 1.0
    assert job_files(agent) == []


def test_unknown_printer_and_branch_are_404(stack: Stack, start_agent: AgentFactory) -> None:
    agent = start_agent()
    with stack.client() as http:
        for path in (
            f"/v1/branches/{agent.branch_id}/printers/NOPE/test",
            "/v1/branches/no-such-branch/printers/POS-80C/test",
            f"/v1/branches/{agent.branch_id}/printers/..%2F..%2Fetc/test",
        ):
            response = http.post(path)
            assert response.status_code == 404, (path, response.text)
            assert response.json()["error"]["code"] in {"PRINTER_NOT_FOUND", "NOT_FOUND"}
    assert job_files(agent) == []


def test_requests_need_the_bearer_token(stack: Stack, start_agent: AgentFactory) -> None:
    agent = start_agent()
    url = f"{stack.api_url}/v1/branches/{agent.branch_id}/printers/POS-80C/test"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = httpx.post(url, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert job_files(agent) == []
    assert httpx.get(f"{stack.api_url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{stack.api_url}/schema/openapi.json").json()["info"]["title"]


def test_paper_out_is_a_typed_422(stack: Stack, start_agent: AgentFactory) -> None:
    agent = start_agent()
    (agent.printer_dir("POS-80C") / "state.json").write_text('{"paper": "out"}')
    url = f"/v1/branches/{agent.branch_id}/printers/POS-80C/test"
    with stack.client() as http:
        started = time.monotonic()
        while (
            http.get(f"/v1/branches/{agent.branch_id}/printers").json()[0]["state"]["paper"]
            != "out"
        ):
            assert time.monotonic() - started < 1.0, "paper-out status took over a second"
            time.sleep(0.02)
        response = http.post(url)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "PAPER_OUT"
        assert response.json()["error"]["job_id"] is None  # refused by the API, nothing sent
        forced = http.post(url, params={"force": "true"})  # the agent refuses too
        assert forced.status_code == 422
        assert forced.json()["error"]["code"] == "PAPER_OUT"
        assert forced.json()["error"]["job_id"]
    printed_before = len([f for f in job_files(agent)])
    (agent.printer_dir("POS-80C") / "state.json").unlink()
    time.sleep(1.2)
    with stack.client() as http:
        assert http.post(url).status_code == 200
    assert len(job_files(agent)) == printed_before + 1


class _DebugClient:
    """A bare MQTT 5 client with the debug login, like mosquitto_pub/sub by hand."""

    def __init__(self, stack: Stack, branch_id: str, agent_id: str) -> None:
        creds = stack.creds("debug")
        self.replies: list[mqtt.MQTTMessage] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.username_pw_set(creds.username, creds.password)
        self.client.on_message = lambda _c, _u, msg: self.replies.append(msg)
        self.client.connect("127.0.0.1", stack.mqtt_port)
        self.client.loop_start()
        self.reply_topic = reply_topic(branch_id, "debug", agent_id)
        self.client.subscribe(self.reply_topic, qos=1)
        time.sleep(0.2)

    def send(
        self,
        topic: str,
        payload: bytes,
        correlation: bytes | None = b"job-1",
        response_topic: str | None = None,
    ) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = response_topic or self.reply_topic
        if correlation is not None:
            props.CorrelationData = correlation
        self.client.publish(topic, payload, qos=1, properties=props).wait_for_publish(5)

    def wait(self, count: int, timeout: float = 5) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while len(self.replies) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return [json.loads(m.payload) for m in self.replies]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_garbage_gets_typed_failed_replies_and_agent_keeps_serving(
    stack: Stack, start_agent: AgentFactory
) -> None:
    agent = start_agent()
    topic = request_topic(agent.branch_id, agent.agent_id)
    debug = _DebugClient(stack, agent.branch_id, agent.agent_id)
    try:
        cases: list[tuple[bytes, bytes | None, str]] = [
            (b"\xff\xfe not json", b"g1", "INVALID_REQUEST"),
            (b'{"v":1}', b"g2", "INVALID_REQUEST"),
            (b'{"v":1,"method":"printer.test","params":{"printer":7}}', b"g3", "INVALID_REQUEST"),
            (b'{"v":1,"method":"printer.explode"}', b"g4", "UNKNOWN_METHOD"),
            (
                b'{"v":1,"method":"printer.test","params":{"printer":"NOPE"}}',
                b"g5",
                "PRINTER_NOT_FOUND",
            ),
            (b'{"v":99,"method":"printer.test"}', b"g6", "UNSUPPORTED_VERSION"),
            (
                b'{"v":-1,"method":"printer.test","params":{"printer":"POS-80C"}}',
                b"g7",
                "UNSUPPORTED_VERSION",
            ),
            (b"[]", b"../../etc/passwd", "INVALID_REQUEST"),
            (
                b'{"v":1,"method":"printer.test","params":{"printer":"POS-80C"}}',
                None,
                "INVALID_REQUEST",
            ),
        ]
        for payload, correlation, _ in cases:
            debug.send(topic, payload, correlation)
        replies = debug.wait(len(cases))
        assert len(replies) == len(cases), replies
        assert [r["stage"] for r in replies] == ["failed"] * len(cases)
        assert sorted(r["error"]["code"] for r in replies) == sorted(c for *_, c in cases)
        # a response topic outside the agent's branch is never used (ACLs would refuse it too)
        debug.send(
            topic, cases[0][0], b"g9", response_topic=f"pm/v1/other/reply/debug/{agent.agent_id}"
        )
        # nor one of another agent of its branch (each agent answers on its own topics only)
        debug.send(
            topic, cases[0][0], b"g10", response_topic=f"pm/v1/{agent.branch_id}/reply/debug/other"
        )
        time.sleep(0.3)
        assert len(debug.replies) == len(cases)
    finally:
        debug.close()
    assert job_files(agent) == []
    with stack.client() as http:
        assert http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test").status_code == 200
