"""504s: an agent that never accepts (AGENT_UNREACHABLE) and one whose printer is slower than
``result_timeout`` (PRINT_TIMEOUT, not retryable: the page started in time and still prints), on a
stack with short timeouts; and no late print after the caller gave up."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from printermaster.stack import Stack

from .conftest import job_files, make_stack, unique_id
from .jobs_helpers import wait_state


@pytest.fixture(scope="module")
def quick_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with make_stack(
        tmp_path_factory.mktemp("quick"), accept_timeout=0.5, result_timeout=1.0
    ) as stack:
        yield stack


def test_agent_that_never_accepts_is_504_unreachable(quick_stack: Stack) -> None:
    agent = quick_stack.add_agent(unique_id("b"), unique_id("a"), ["POS-80C"])
    quick_stack.wait_agent(agent.branch_id, agent.agent_id)
    assert agent.process.pid is not None
    os.kill(agent.process.pid, signal.SIGSTOP)  # alive for the broker, deaf to requests
    try:
        with quick_stack.client() as http:
            started = time.perf_counter()
            response = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test")
            elapsed = time.perf_counter() - started
        assert response.status_code == 504
        error = response.json()["error"]
        assert error["code"] == "AGENT_UNREACHABLE"
        # the agent answered neither the job nor its cancel: the API cannot promise that the
        # page never prints, so it does not invite a retry (docs/jobs.md)
        assert error["retryable"] is False and error["job_id"]
        assert 1.0 <= elapsed < 2.5  # accept_timeout, then as long for the cancel's answer
        # The request sits in the stalled agent's socket past its deadline (accept_timeout =
        # 0.5 s), where the broker's Message Expiry no longer reaches it.
        time.sleep(0.5)
    finally:
        os.kill(agent.process.pid, signal.SIGCONT)
    # The agent wakes up, reads the request late and refuses it from the payload's deadline:
    # the caller was told 504, so nothing may print now (not eventually: a print would land
    # within this window).
    time.sleep(1.0)
    agent.process.stop()
    assert job_files(agent) == []


def test_agent_that_accepts_but_never_finishes_is_504_print_timeout(quick_stack: Stack) -> None:
    agent = quick_stack.add_agent(unique_id("b"), unique_id("a"), ["POS-80C"])
    quick_stack.wait_agent(agent.branch_id, agent.agent_id)
    agent.printer_dir("POS-80C").mkdir(parents=True, exist_ok=True)
    (agent.printer_dir("POS-80C") / "state.json").write_text(json.dumps({"delay_s": 3}))
    with quick_stack.client() as http:
        response = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test")
        assert response.status_code == 504
        error = response.json()["error"]
        assert error["code"] == "PRINT_TIMEOUT"
        # the page started before its deadline (accept_timeout, 0.5 s): the deadline is the
        # latest start, so the slow printer finishes it; the 504 said so (not retryable)
        assert error["retryable"] is False
        wait_state(http, error["job_id"], {"printed"}, timeout=15)
    agent.process.stop()
    assert len(job_files(agent)) == 1
