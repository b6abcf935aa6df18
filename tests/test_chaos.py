"""The chaos run (``ops.chaos``): kill -9 agents, the broker and the API and stall a network
printer while jobs with mixed deadlines and test prints from a retrying client flow, then judge
every job: ended, never twice, never late, never expired early, final never changed, the API's
answers match the paper, and no retryable 504 followed by paper.

The short form runs in the normal suite; the full 500-job run needs ``--run-slow``."""

from __future__ import annotations

from collections import Counter

import pytest

from ops._chaos_audit import ChaosReport, judge
from ops.chaos import ChaosConfig, run_chaos


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
