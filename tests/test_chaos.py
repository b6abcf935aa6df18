"""The chaos run (``ops.chaos``): kill -9 agents, the broker and the API and stall a network
printer while jobs with mixed deadlines and test prints from a retrying client flow, then judge
every job: ended, never twice, never late, never expired early, final never changed, the API's
answers match the paper, and no retryable 504 followed by paper.

The short form runs in the normal suite; the full 500-job run needs ``--run-slow``."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import pytest

from ops import _chaos_read as read
from ops._chaos_audit import ChaosReport, judge
from ops._chaos_config import PRINTER
from ops.chaos import ChaosConfig, run_chaos
from printermaster.stack import Stack

from .conftest import unique_id


def _check(config: ChaosConfig) -> None:
    report = run_chaos(config)
    print(report.render())  # the tallies, for ``pytest -s``
    kills = [what for _, what in report.events if what.startswith("kill -9")]
    assert len(kills) == 4, report.events  # two agents, the broker, the API
    assert report.problems() == [], report.render()
    assert len(report.still_open) == 0
    assert sum(report.states.values()) >= config.jobs  # plus the test prints that made a job


def test_chaos_short() -> None:
    _check(ChaosConfig(jobs=60, rate=8.0, test_prints=8))


@pytest.mark.slow
def test_chaos_full() -> None:
    _check(ChaosConfig(jobs=500, rate=50.0))


def test_the_judge_explains_a_job_printed_late() -> None:
    """A broken promise comes with what is known of the job, so a failed run explains itself."""
    job = {
        "state": "printed",
        "printer_id": "KITCHEN",
        "agent_id": "a3",
        "created_at": 100.0,
        "deadline": 105.0,
    }
    timeline = [
        {"state": "queued", "at": 100.0, "cause": "submitted"},
        {"state": "printed", "at": 106.1, "cause": "printed"},
    ]
    report = ChaosReport(jobs=1)
    judge(report, {"j1": job}, {"j1": timeline}, {}, Counter({"j1": 1, "x": 1}), {"j1": 106.03}, [])
    assert report.printed_late == {"j1": pytest.approx(1.03)}
    assert report.details == [
        "j1: printed on KITCHEN (a3); deadline +5.000 s; paper +6.030 s; "
        "queued +0.000 s (submitted); printed +6.100 s (printed)",
        "x: paper, not a job of this run",
    ]
    assert "details:" in report.render()


def test_a_print_frozen_mid_way_is_judged_by_when_it_started(stack: Stack) -> None:
    """An agent frozen (SIGSTOP) in the middle of printing a job that started before its
    deadline lands the ticket after the deadline: allowed (the deadline is the latest start,
    the write allowance lets a started print end). The judge must time the paper by when it
    started. The two-API chaos run froze the paused agent's first test print so (3 s deadline,
    paused 4 s mid-print) and counted it printed 1.03 s late."""
    handle = stack.add_agent(unique_id("b"), unique_id("a"), [PRINTER], start=False)
    directory = handle.printer_dir(PRINTER)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state.json").write_text(json.dumps({"delay_s": 1.5}))
    handle.process.start()
    try:
        stack.wait_agent(handle.branch_id, handle.agent_id)
        body = {
            "branch_id": handle.branch_id,
            "printer_id": PRINTER,
            "content": {"type": "document", "blocks": [{"type": "text", "text": "frozen"}]},
            "expire_after": 1.5,
        }
        with stack.client(timeout=10) as http:
            job_id = http.post("/v1/jobs", json=body).json()["id"]
            give_up = time.monotonic() + 5
            while (job := http.get(f"/v1/jobs/{job_id}").json())["state"] != "printing":
                assert time.monotonic() < give_up, job
                time.sleep(0.01)
            pid = handle.process.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)  # mid-print: its 1.5 s have just begun
            try:
                time.sleep(max(0.0, job["deadline"] + 2.0 - time.time()))
            finally:
                os.kill(pid, signal.SIGCONT)
            while (job := http.get(f"/v1/jobs/{job_id}").json())["state"] != "printed":
                assert time.monotonic() < give_up + 10, job
                time.sleep(0.05)
    finally:
        handle.process.stop()
    paper, started = read.paper([handle])
    report = ChaosReport(jobs=1)
    judge(report, {job_id: job}, {job_id: job["timeline"]}, {}, paper, started, [])
    assert paper[job_id] == 1
    assert report.printed_late == {}, report.details
    assert started[job_id] <= job["deadline"]
