"""One W3C ``traceparent`` follows a test print: the HTTP request, the API's log, the MQTT
request (read by a subscriber on the broker), the agent's log, and the agent's replies."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from branch_agent._outbox import PROGRESS_HOLD_S
from printermaster.stack import Stack
from protocol import parse_traceparent

from ._mqtt import Probe, Received
from ._wait import eventually
from .conftest import AgentFactory


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The log's JSON events (every line of a service log is one)."""
    events = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def trace_of(message: Received) -> str | None:
    return parse_traceparent(dict(message.user_properties).get("traceparent"))


def test_one_traceparent_from_http_request_to_agent_and_back(
    stack: Stack, start_agent: AgentFactory, observer: Probe
) -> None:
    agent = start_agent()
    trace_id = secrets.token_hex(16)
    header = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    with stack.client() as http:
        response = http.post(
            f"/v1/branches/{agent.branch_id}/printers/POS-80C/test",
            headers={"traceparent": header},
        )
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]

    # the MQTT request to the agent carries the trace (with the API's own parent id)
    request = eventually(
        what="the request on the broker",
        check=lambda: [m for m in observer.messages if m.topic.endswith(f"/{agent.agent_id}/req")],
    )[0]
    assert request.correlation == job_id.encode()
    assert trace_of(request) == trace_id
    # ... and the agent's reply carries it back: one, the final (a fast print's accepted and
    # printing are replaced by it before they are due)
    eventually(
        what="the agent's reply",
        check=lambda: [m for m in observer.messages if m.correlation == job_id.encode()][1:],
    )
    time.sleep(PROGRESS_HOLD_S + 0.3)  # a held progress reply would have been sent by now
    replies = [m for m in observer.messages if m.correlation == job_id.encode()]
    stages = [json.loads(m.payload)["stage"] for m in replies if "/reply/" in m.topic]
    assert stages == ["done"]
    assert {trace_of(m) for m in replies} == {trace_id}

    # the API's log: the access event and each job transition, all with the trace id
    def api_events() -> list[dict[str, Any]]:
        events = [e for e in json_lines(stack.api.log_path) if e.get("trace_id") == trace_id]
        # the access event is written once the response has gone out: possibly after we read
        done = {e.get("state") for e in events} | {e["logger"] for e in events}
        return events if {"printed", "cloud_api.access"} <= done else []

    events = eventually(api_events, what="the API's job events")
    access = [e for e in events if e["logger"] == "cloud_api.access"]
    assert len(access) == 1
    assert access[0]["route"] == "/v1/branches/{branch_id}/printers/{printer_id}/test"
    assert access[0]["method"] == "POST" and access[0]["status"] == 200
    assert access[0]["principal"] == "admin" and access[0]["duration_ms"] > 0
    assert access[0]["branch_id"] == agent.branch_id and access[0]["printer_id"] == "POS-80C"
    assert stack.api_token not in json.dumps(events)
    job_events = [e for e in events if e["logger"] == "cloud_api.jobs"]
    assert [e["state"] for e in job_events] == ["sent", "printed"]
    for event in job_events:
        assert event["job_id"] == job_id
        assert event["branch_id"] == agent.branch_id
        assert event["agent_id"] == agent.agent_id

    # the agent's log: the request and each reply, with the same ids and trace
    def agent_events() -> list[dict[str, Any]]:
        events = [e for e in json_lines(agent.process.log_path) if e.get("job_id") == job_id]
        return events if any(e.get("stage") == "done" for e in events) else []

    events = eventually(agent_events, what="the agent's job events")
    assert [e["msg"] for e in events] == [
        "request received",
        "reply done",
    ]
    for event in events:
        assert event["trace_id"] == trace_id
        assert event["branch_id"] == agent.branch_id
        assert event["agent_id"] == agent.agent_id


def test_a_request_without_traceparent_gets_a_new_trace(
    stack: Stack, start_agent: AgentFactory, observer: Probe
) -> None:
    agent = start_agent()
    with stack.client() as http:
        response = http.post(
            f"/v1/branches/{agent.branch_id}/printers/POS-80C/test",
            headers={"traceparent": "00-not-a-valid-traceparent-01"},
        )
    assert response.status_code == 200
    job_id = response.json()["job_id"].encode()
    request = eventually(
        what="the request", check=lambda: [m for m in observer.messages if m.correlation == job_id]
    )[0]
    trace_id = trace_of(request)
    assert trace_id is not None and trace_id != "0" * 32
    events = eventually(
        what="the access event",
        check=lambda: [
            e
            for e in json_lines(stack.api.log_path)
            if e.get("trace_id") == trace_id and e["logger"] == "cloud_api.access"
        ],
    )
    assert events[0]["status"] == 200


@pytest.mark.parametrize(
    ("value", "trace_id"),
    [
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        (
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ",
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        # a later version may add fields; its first four are read as version 00's
        (
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz",
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz", None),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", None),  # uppercase
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", None),
        ("", None),
        (None, None),
    ],
)
def test_traceparent_is_read_as_w3c_says(value: str | None, trace_id: str | None) -> None:
    assert parse_traceparent(value) == trace_id


def test_new_traces_are_valid_traceparents() -> None:
    from protocol import new_trace_id, traceparent

    ids = {new_trace_id() for _ in range(1000)}
    assert len(ids) == 1000
    for trace_id in list(ids)[:50]:
        assert parse_traceparent(traceparent(trace_id)) == trace_id
