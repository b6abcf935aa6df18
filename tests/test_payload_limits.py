"""Payload hygiene: the broker refuses MQTT payloads over MAX_PAYLOAD_BYTES (nothing prints),
the API answers oversized or hostile HTTP bodies with a typed error, never a 500."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx

from printermaster.stack import Stack
from protocol import MAX_PAYLOAD_BYTES, reply_topic, request_topic

from ._mqtt import Probe, raw_publish_qos1
from .conftest import AgentFactory, job_files
from .jobs_helpers import wait_state

PACKET_TOO_LARGE = 0x95


def _request(size: int) -> bytes:
    head = b'{"v":1,"method":"printer.test","params":{"printer":"POS-80C"},"pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def test_oversized_mqtt_payload_is_refused_and_nothing_prints(
    stack: Stack, start_agent: AgentFactory
) -> None:
    agent = start_agent()
    debug = Probe(stack.mqtt_port, stack.creds("debug"), client_id="size-debug")
    assert debug.connect() == 0
    assert debug.subscribe(reply_topic(agent.branch_id, "debug", agent.agent_id)) == 1
    topic = request_topic(agent.branch_id, agent.agent_id)
    try:
        code = raw_publish_qos1(
            stack.mqtt_port, stack.creds("debug"), topic, _request(MAX_PAYLOAD_BYTES + 1)
        )
        print(f"PUBACK for {MAX_PAYLOAD_BYTES + 1} bytes: {code:#x}")
        assert code == PACKET_TOO_LARGE
        time.sleep(0.5)  # not eventually: no answer comes within the window
        assert debug.messages == []  # the agent never saw it, so it never answered
        # one byte under the limit is delivered (and answered: no correlation data)
        replies = reply_topic(agent.branch_id, "debug", agent.agent_id)
        assert debug.publish(topic, _request(MAX_PAYLOAD_BYTES), response_topic=replies) in (0, 16)
        reply = json.loads(debug.wait_for(lambda m: True, timeout=5).payload)
        assert reply["stage"] == "failed" and reply["error"]["code"] == "INVALID_REQUEST"
    finally:
        debug.close()
    assert job_files(agent) == []
    with stack.client() as http:  # the agent kept serving
        assert http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test").status_code == 200


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["retryable"] is False


def test_oversized_http_bodies_get_413_with_the_error_shape(stack: Stack) -> None:
    big = b'{"chain":"c","branches":["' + b"x" * (2 * 1024 * 1024) + b'"]}'
    with stack.client(timeout=30) as http:
        for url in ("/v1/api-keys", "/v1/branches/b1/agents"):
            _assert_error(
                http.post(url, content=big, headers={"content-type": "application/json"}),
                413,
                "PAYLOAD_TOO_LARGE",
            )

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            for _ in range(40):
                yield b" " * 65536

        _assert_error(
            http.post(
                "/v1/api-keys", content=chunks(), headers={"content-type": "application/json"}
            ),
            413,
            "PAYLOAD_TOO_LARGE",
        )


def test_hostile_json_bodies_are_typed_4xx(stack: Stack) -> None:
    hostile = [
        b"[" * 100_000 + b"]" * 100_000,  # deep nesting under the size limit
        b'{"chain": "c", "branches": ["b"], "chain": "' + b"\xff\xfe" + b'"}',
        b'{"chain": "c", "branches": ["b"], "admin": true}',  # unknown field
        b'{"chain": "c", "branches": []}',
        b'{"chain": "' + b"c" * 1000 + b'", "branches": ["b"]}',
        b"\x00\x01 not json",
    ]
    with stack.client(timeout=30) as http:
        for body in hostile:
            response = http.post(
                "/v1/api-keys", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code in (400, 422), (body[:40], response.text[:300])
            assert response.json()["error"]["code"] == "INVALID_REQUEST"
        assert http.get("/v1/api-keys").status_code == 200  # and the API is fine


def _oversized_ticket() -> dict[str, object]:
    """A document of about 480 KB: every block within its own limits, the whole over the
    protocol's MAX_CONTENT_BYTES (and under the HTTP body limit)."""
    blocks = [{"type": "text", "text": f"{i:04d} " + "x" * 3995} for i in range(120)]
    content = {"type": "document", "blocks": blocks}
    assert 470_000 < len(json.dumps(content)) < 1024 * 1024
    return content


def test_content_over_the_protocol_limit_is_413_and_nothing_is_stored_or_sent(
    stack: Stack, start_agent: AgentFactory
) -> None:
    agent = start_agent()
    with stack.client(timeout=30) as http:
        body = {"branch_id": agent.branch_id, "printer_id": "POS-80C"}
        answer = http.post(
            "/v1/jobs",
            json={**body, "content": _oversized_ticket()},
            headers={"Idempotency-Key": "too-big"},
        )
        _assert_error(answer, 413, "PAYLOAD_TOO_LARGE")
        error = answer.json()["error"]
        assert error["field"] == "$.content" and "byte limit" in error["message"], error
        assert error["job_id"] is None
        listed = http.get("/v1/jobs", params={"branch_id": agent.branch_id}).json()
        assert listed["jobs"] == []  # nothing stored: the sweeper has nothing to resend
        # the same key with a ticket that fits is a new job (the refused one left no trace)
        fits = http.post(
            "/v1/jobs",
            json={**body, "content": {"type": "raw", "data": "G0A="}},
            headers={"Idempotency-Key": "too-big"},
        )
        assert fits.status_code == 202, fits.text
        wait_state(http, fits.json()["id"], {"printed"})
    assert len(job_files(agent)) == 1  # nothing else was sent: only the ticket that fits printed
