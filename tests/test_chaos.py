"""The chaos run (``ops.chaos``): kill -9 agents, the broker and the API and stall a network
printer while jobs with mixed deadlines and test prints from a retrying client flow, then judge
every job: ended, never twice, never late, never expired early, final never changed, the API's
answers match the paper, and no retryable 504 followed by paper.

The short form runs in the normal suite; the full 500-job run needs ``--run-slow``."""

from __future__ import annotations

import pytest

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
