"""The chaos run with two API processes on PostgreSQL and two brokers (``ops.chaos --apis 2
--store postgresql --brokers 2``): the killed API stays dead and a survivor adopts its jobs; the
agents fail over between brokers; the tallies hold as in the single-instance run."""

from __future__ import annotations

import pytest

from ops.chaos import ChaosConfig, run_chaos


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_chaos_with_two_apis_on_postgresql_and_two_brokers() -> None:
    pytest.importorskip("asyncpg")
    config = ChaosConfig(jobs=80, rate=10.0, apis=2, store="postgresql", brokers=2)
    report = run_chaos(config)
    print(report.render())
    kills = [what for _, what in report.events if what.startswith("kill -9")]
    assert len(kills) == 4, report.events
    assert any("adopted instance api-1" in what for _, what in report.events), report.events
    assert report.problems() == [], report.render()
    assert not report.still_open
    # every submission is a job, and so is each test print attempt that made one (a retryable
    # 504 is retried under its Idempotency-Key as a new job: docs/jobs.md), as in test_chaos
    assert sum(report.states.values()) >= config.jobs
