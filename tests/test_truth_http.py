"""Truthful answers over HTTP, with the real API, broker and agents, on SQLite and PostgreSQL:
a 504 is never followed by paper, Idempotency-Key compares the decoded body, test prints take
an Idempotency-Key."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from printermaster.stack import AgentHandle, Stack

from ._wait import eventually
from .conftest import job_files, make_stack, unique_id
from .jobs_helpers import FINAL, receipt, wait_state
from .pg import postgres_url


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def truth_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp(f"truth-{request.param}")
    overrides: dict[str, Any] = {"sweep_interval": 0.2}  # production grace periods
    if request.param == "postgres":
        overrides["store_url"] = postgres_url(request)
    with make_stack(root, **overrides) as stack:
        yield stack


@pytest.fixture
def agent(truth_stack: Stack) -> Iterator[AgentHandle]:
    handle = truth_stack.add_agent(unique_id("b"), unique_id("a"), ["POS-80C"])
    truth_stack.wait_agent(handle.branch_id, handle.agent_id)
    yield handle
    if handle.process.pid is not None:
        os.kill(handle.process.pid, signal.SIGCONT)
    handle.process.stop()


def test_a_504_from_a_stalled_agent_is_never_followed_by_paper(
    truth_stack: Stack, agent: AgentHandle
) -> None:
    pid = agent.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the fault: the agent's process hangs, its socket stays open
    try:
        with truth_stack.client(timeout=30) as http:
            answer = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert answer.status_code == 504, answer.text
    error = answer.json()["error"]
    assert error["code"] == "AGENT_UNREACHABLE"
    # the agent was paused through the cancel as well: nothing is known, so no invitation
    assert error["retryable"] is False
    job_id = error["job_id"]
    with truth_stack.client(timeout=10) as http:
        # the agent now reads the request (past its deadline) and the cancel: it answers both
        job = wait_state(http, job_id, FINAL, timeout=30)
        assert job["state"] in {"expired", "cancelled"}, job
        assert job["late_result"] is None, job
        # and it still prints what comes next
        printed = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test")
        assert printed.status_code == 200, printed.text
    assert [f.stem for f in job_files(agent)] == [printed.json()["job_id"]]


def test_idempotency_compares_the_decoded_body(truth_stack: Stack, agent: AgentHandle) -> None:
    body = {
        "branch_id": agent.branch_id,
        "printer_id": "POS-80C",
        "content": receipt("Table 9"),
        "copies": 1,
    }
    compact = json.dumps(body, separators=(",", ":")).encode()
    reordered = dict(reversed(list(body.items())))
    spaced = json.dumps(reordered, indent=4).encode()
    no_default = json.dumps({k: v for k, v in body.items() if k != "copies"}).encode()
    headers = {"Idempotency-Key": unique_id("k"), "Content-Type": "application/json"}
    with truth_stack.client(timeout=10) as http:
        first = http.post("/v1/jobs", content=compact, headers=headers)
        assert first.status_code == 202, first.text
        for other in (spaced, no_default):
            again = http.post("/v1/jobs", content=other, headers=headers)
            assert again.status_code == 200, again.text
            assert again.json()["id"] == first.json()["id"]
        changed = json.dumps({**body, "copies": 2}).encode()
        assert http.post("/v1/jobs", content=changed, headers=headers).status_code == 409
        wait_state(http, first.json()["id"])
    assert len(job_files(agent)) == 1


def test_test_prints_take_an_idempotency_key(truth_stack: Stack, agent: AgentHandle) -> None:
    url = f"/v1/branches/{agent.branch_id}/printers/POS-80C/test"
    headers = {"Idempotency-Key": unique_id("t")}
    with truth_stack.client(timeout=10) as http:
        first = http.post(url, headers=headers)
        again = http.post(url, headers=headers)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert again.json()["job_id"] == first.json()["job_id"]
        other = http.post(url, headers={"Idempotency-Key": unique_id("t")})
        assert other.status_code == 200 and other.json()["job_id"] != first.json()["job_id"]
    assert len(job_files(agent)) == 2


def test_a_test_print_asked_again_while_its_agent_is_offline_answers_its_job(
    truth_stack: Stack, agent: AgentHandle
) -> None:
    """The key is looked up before the agent's presence: a client that retries a test print
    whose answer it lost, while the agent is away, learns the job it already has — not a
    503 that invites it to try again, for a job that may be on paper."""
    url = f"/v1/branches/{agent.branch_id}/printers/POS-80C/test"
    headers = {"Idempotency-Key": unique_id("t")}
    with truth_stack.client(timeout=10) as http:
        first = http.post(url, headers=headers)
        assert first.status_code == 200, first.text
        agent.process.stop()
        truth_stack.wait_agent(agent.branch_id, agent.agent_id, online=False)
        again = http.post(url, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json()["job_id"] == first.json()["job_id"]
        # a new key still meets the truth about the agent
        other = http.post(url, headers={"Idempotency-Key": unique_id("t")})
        assert other.status_code == 503 and other.json()["error"]["code"] == "AGENT_OFFLINE"
    assert len(job_files(agent)) == 1


def test_a_job_failed_on_paper_out_is_retried_under_its_key(
    truth_stack: Stack, agent: AgentHandle
) -> None:
    """Re-POSTing a job that failed on a printer condition with its key prints it (a new job
    pointing at the old one) — unless the agent held it (``waiting_printer``) in the first
    place, then the first job prints when the paper is back."""
    state = agent.printer_dir("POS-80C") / "state.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text('{"paper": "out"}')
    body = {"branch_id": agent.branch_id, "printer_id": "POS-80C", "content": receipt("T 3")}
    headers = {"Idempotency-Key": unique_id("k")}
    with truth_stack.client(timeout=10) as http:
        first = http.post("/v1/jobs", json=body, headers=headers).json()
        held = wait_state(http, first["id"], FINAL | {"waiting_printer"})
        state.write_text('{"paper": "ok"}')
        if held["state"] == "waiting_printer":  # the agent holds jobs for its printer
            assert held["waiting_for"]["code"] == "PAPER_OUT"
            assert wait_state(http, first["id"], timeout=30)["state"] == "printed"
            return
        assert held["state"] == "failed" and held["error"]["code"] == "PAPER_OUT", held

        def retried() -> dict[str, Any]:
            retry = http.post("/v1/jobs", json=body, headers=headers)
            if retry.status_code != 202:
                pytest.fail(retry.text)
            done = wait_state(http, retry.json()["id"])
            if done["retry_of"] is None:
                pytest.fail(f"not a retry of the failed job: {done}")
            assert done["state"] == "printed", done  # not yet: the paper is not back
            return done

        # until the agent's status says the paper is back
        done = eventually(retried, timeout=10, interval=0)
        assert http.post("/v1/jobs", json=body, headers=headers).json()["id"] == done["id"]
    assert [f.stem for f in job_files(agent)] == [done["id"]]
