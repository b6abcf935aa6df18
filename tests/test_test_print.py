"""The walking skeleton end to end: HTTP -> API -> Mosquitto -> agent -> virtual printer -> back."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from printermaster.stack import Stack
from protocol import reply_topic, request_topic

from ._mqtt import Probe
from ._wait import eventually
from .conftest import AgentFactory, agents_on, job_files, make_stack, unique_id


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


def _sequential_prints_lose_nothing(count: int, start_agent: AgentFactory, stack: Stack) -> None:
    agent = start_agent()
    job_ids = []
    with stack.client(timeout=10) as http:
        for _ in range(count):
            response = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test")
            assert response.status_code == 200, response.text
            job_ids.append(response.json()["job_id"])
    assert len(set(job_ids)) == count
    assert sorted(f.stem for f in job_files(agent)) == sorted(job_ids)


def test_hundred_sequential_prints_lose_nothing(stack: Stack, start_agent: AgentFactory) -> None:
    """The thousand-print run below at a tenth of its size, in the default suite."""
    _sequential_prints_lose_nothing(100, start_agent, stack)


@pytest.mark.slow
def test_thousand_sequential_prints_lose_nothing(stack: Stack, start_agent: AgentFactory) -> None:
    _sequential_prints_lose_nothing(1000, start_agent, stack)


def test_concurrent_requests_never_cross_replies(tmp_path: Path) -> None:
    """The legacy race as a regression test: an agent answering with zero processing time, 200
    requests at once, every caller gets its own reply. (A stack of its own whose agent has 30 s,
    not 3, to take a test print: on a machine busy with parallel tests the 200th would
    otherwise expire in the agent's queue, which is not the race this test is about.)"""
    with make_stack(tmp_path / "stack", accept_timeout=30.0) as stack, agents_on(stack) as start:
        agent = start()
        url = f"/v1/branches/{agent.branch_id}/printers/POS-80C/test"

        async def run() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(
                base_url=stack.api_url,
                limits=limits,
                timeout=60,
                headers={"Authorization": f"Bearer {stack.api_token}"},
            ) as c:
                return await asyncio.gather(*(c.post(url) for _ in range(200)))

        responses = asyncio.run(run())
    refused = [r.json() for r in responses if r.status_code != 200]
    assert [r.status_code for r in responses] == [200] * 200, refused[:3]
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

    def paper(http: httpx.Client) -> str:
        return str(http.get(f"/v1/branches/{agent.branch_id}/printers").json()[0]["state"]["paper"])

    with stack.client() as http:
        eventually(lambda: paper(http) == "out", timeout=1.0, what="paper-out within a second")
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
    with stack.client() as http:
        eventually(lambda: paper(http) == "ok", timeout=5)
        assert http.post(url).status_code == 200
    assert len(job_files(agent)) == printed_before + 1


def test_garbage_gets_typed_failed_replies_and_agent_keeps_serving(
    stack: Stack, start_agent: AgentFactory
) -> None:
    agent = start_agent()
    topic = request_topic(agent.branch_id, agent.agent_id)
    debug = Probe(stack.mqtt_port, stack.creds("debug"), unique_id("debug-"))
    replies = reply_topic(agent.branch_id, "debug", agent.agent_id)
    assert debug.connect() == 0
    assert debug.subscribe(replies) == 1

    def send(payload: bytes, correlation: bytes | None, response_topic: str = replies) -> None:
        assert debug.publish(
            topic, payload, correlation=correlation, response_topic=response_topic
        ) in (0, 16)

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
            send(payload, correlation)
        eventually(lambda: len(debug.messages) >= len(cases), timeout=5)
        answers = [json.loads(m.payload) for m in debug.messages]
        assert len(answers) == len(cases), answers
        assert [r["stage"] for r in answers] == ["failed"] * len(cases)
        assert sorted(r["error"]["code"] for r in answers) == sorted(c for *_, c in cases)
        # a response topic outside the agent's branch is never used (ACLs would refuse it too)
        send(cases[0][0], b"g9", response_topic=f"pm/v1/other/reply/debug/{agent.agent_id}")
        # nor one of another agent of its branch (each agent answers on its own topics only)
        send(cases[0][0], b"g10", response_topic=f"pm/v1/{agent.branch_id}/reply/debug/other")
        # not eventually: proves no reply arrives within the window (g9 and g10 go unanswered)
        time.sleep(0.3)
        assert len(debug.messages) == len(cases)
    finally:
        debug.close()
    assert job_files(agent) == []
    with stack.client() as http:
        assert http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test").status_code == 200
