"""The one log format of the API and the agent (JSON lines for services, text on a terminal), and
the agent's own /metrics on localhost."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator

import httpx
import psutil
import pytest

from broker import free_port
from pmlog import configure_logging
from printermaster.stack import Stack
from protocol import reset_trace_id, set_trace_id

from ._wait import eventually
from .conftest import AgentFactory


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(stream: io.TextIOBase | io.StringIO, fmt: str) -> None:
    configure_logging("INFO", fmt, stream=stream)  # type: ignore[arg-type]
    log = logging.getLogger("cloud_api.jobs")
    token = set_trace_id("4bf92f3577b34da6a3ce929d0e0e4736")
    try:
        log.info("job %s", "printed", extra={"job_id": "j1", "branch_id": "b1", "agent_id": None})
    finally:
        reset_trace_id(token)
    log.debug("not shown")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed", extra={"trace_id": "0af7651916cd43dd8448eb211c80319c"})


def test_json_lines_carry_the_fields_and_the_current_trace(restore_logging: None) -> None:
    out = io.StringIO()
    emit(out, "json")
    lines = out.getvalue().splitlines()
    first = json.loads(lines[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.pop("ts"))
    assert first == {
        "level": "info",
        "logger": "cloud_api.jobs",
        "msg": "job printed",
        "job_id": "j1",
        "branch_id": "b1",
        "agent_id": None,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }
    assert len(lines) == 2  # DEBUG filtered; the traceback stays inside its JSON line
    second = json.loads(lines[1])
    assert second["level"] == "error" and second["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert "ValueError: boom" in second["exc"]


def test_text_for_people_has_the_same_fields(restore_logging: None) -> None:
    out = io.StringIO()
    emit(out, "text")
    first = out.getvalue().splitlines()[0]
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3} INFO  cloud_api\.jobs: job printed job_id=j1 branch_id=b1 "
        r"agent_id=None trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
        first,
    ), first
    assert "ValueError: boom" in out.getvalue()


def test_auto_is_text_on_a_terminal_and_json_otherwise(restore_logging: None) -> None:
    primary, secondary = os.openpty()
    with open(secondary, "w", closefd=True) as tty, open(primary, "rb", buffering=0) as reader:
        handler = configure_logging("INFO", "auto", stream=tty)
        logging.getLogger("x").info("hello")
        tty.flush()
        assert not reader.read(200).startswith(b"{")
    assert type(handler.formatter).__name__ == "TextFormatter"
    handler = configure_logging("INFO", "auto", stream=io.StringIO())
    assert type(handler.formatter).__name__ == "JsonFormatter"


def test_the_agent_serves_its_metrics_on_localhost_only(
    stack: Stack, start_agent: AgentFactory
) -> None:
    port = free_port()
    agent = start_agent(metrics_port=port)
    url = f"http://127.0.0.1:{port}/metrics"
    with stack.client() as http:
        assert http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test").status_code == 200

    def scraped() -> str:
        text = httpx.get(url).text
        assert 'printermaster_agent_replies_total{code="",stage="done"} 1.0' in text, text
        return text

    text = eventually(scraped, timeout=10, interval=0.1)
    for line in (
        'printermaster_agent_job_stage_seconds_count{stage="accepted"} 1.0',
        'printermaster_agent_job_stage_seconds_count{stage="printing"} 1.0',
        "printermaster_agent_connected 1.0",
        "printermaster_agent_queue_depth 0.0",
        "printermaster_agent_mqtt_connections_total 1.0",
    ):
        assert line in text, line
    assert re.search(r"^printermaster_agent_rss_bytes [1-9]", text, re.M)
    assert agent.process.pid is not None
    listening = [
        c.laddr
        for c in psutil.Process(agent.process.pid).net_connections("inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port)]


def test_the_agent_serves_no_metrics_unless_configured(
    stack: Stack, start_agent: AgentFactory
) -> None:
    agent = start_agent()
    assert agent.process.pid is not None
    listening = [
        c
        for c in psutil.Process(agent.process.pid).net_connections("inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening == []


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_fast_event_is_the_line_an_ordinary_call_writes(fmt: str, restore_logging: None) -> None:
    from pmlog import log_event

    out = io.StringIO()
    configure_logging("INFO", fmt, stream=out)  # type: ignore[arg-type]
    log = logging.getLogger("cloud_api.jobs")
    fields = {"job_id": "j1", "state": "printed", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    log.info("job printed", extra=dict(fields))
    log_event(log, logging.INFO, "job printed", dict(fields))
    log_event(log, logging.DEBUG, "not shown", dict(fields))
    ordinary, fast = (
        re.sub(r"\d\d:\d\d:\d\d\.\d{3}", "T", line) for line in out.getvalue().splitlines()
    )
    assert fast == ordinary

    # with another handler listening (a test's capture, say), it is an ordinary record
    seen: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = seen.append  # type: ignore[method-assign]
    log.addHandler(capture)
    try:
        log_event(log, logging.INFO, "job printed", dict(fields))
    finally:
        log.removeHandler(capture)
    assert [r.getMessage() for r in seen] == ["job printed"]
    assert seen[0].job_id == "j1"  # type: ignore[attr-defined]
    assert len(out.getvalue().splitlines()) == 3
