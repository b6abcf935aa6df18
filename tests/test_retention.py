"""Retention: finished jobs older than the configured age are purged in batches (SQLite and
PostgreSQL); unfinished and recent jobs stay; the metrics' job count reads only unfinished
states; and a running API purges on its own, off the request path."""

from __future__ import annotations

import secrets
import sqlite3
import time
from pathlib import Path

import httpx

from cloud_api._retention import purge_once
from cloud_api._settings import ApiSettings, MqttClientSettings
from cloud_api.store import JobState, Store
from cloud_api.store._retention import count_unfinished, id_floor, purge_finished
from protocol import new_job_id

from ._wait import eventually
from .conftest import make_stack
from .test_metrics import gauge
from .test_store import job

DAY = 86400.0


def id_at(at: float) -> str:
    """A job id as :func:`protocol.new_job_id` would have made it at epoch time ``at``."""
    return id_floor(at)[:12] + secrets.token_hex(10)


async def add(store: Store, state: JobState, created: float, updated: float) -> str:
    record = job(id=id_at(created), state=state, created_at=created, updated_at=updated)
    stored, _ = await store.create_job(record, "test", state_cause="test")
    return stored.id


async def test_purge_deletes_old_finished_jobs_in_batches(store: Store) -> None:
    now = time.time()
    old = now - 40 * DAY
    doomed = [
        await add(store, state, old + i, old + i + 5)
        for i, state in enumerate(
            [JobState.PRINTED, JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED] * 2
            + [JobState.OUTCOME_UNKNOWN]
        )
    ]
    kept = [
        await add(store, JobState.QUEUED, old, old),  # not final, however old
        await add(store, JobState.ACCEPTED, old, old),
        await add(store, JobState.FAILED, old, now - DAY),  # finished recently
        await add(store, JobState.PRINTED, now - DAY, now - DAY),  # recent
    ]
    fresh, _ = await store.create_job(
        job(id=new_job_id(), state=JobState.PRINTED), "test", state_cause="test"
    )
    kept.append(fresh.id)
    cutoff = now - 30 * DAY

    assert await purge_finished(store, cutoff, batch=4) == 4
    assert await purge_finished(store, cutoff, batch=4) == 4
    assert await purge_finished(store, cutoff, batch=4) == 1
    assert await purge_finished(store, cutoff, batch=4) == 0
    for job_id in doomed:
        assert await store.get_job(job_id) is None
        assert await store.timeline(job_id) == []
    for job_id in kept:
        assert await store.get_job(job_id) is not None
        assert await store.timeline(job_id) != []
    assert await count_unfinished(store) == {"queued": 1, "accepted": 1}


async def test_a_retention_round_purges_everything_due(store: Store) -> None:
    now = time.time()
    for i in range(7):
        await add(store, JobState.PRINTED, now - 3 * DAY + i, now - 3 * DAY + i)
    settings = ApiSettings(
        api_token="t",
        mqtt=MqttClientSettings(username="u", password="p"),
        job_retention_s=2 * DAY,
        retention_batch=3,
    )
    assert await purge_once(store, settings) == 7
    assert await purge_once(store, settings) == 0


def test_counting_unfinished_jobs_reads_only_their_index_entries(tmp_path: Path) -> None:
    """The scrape's query never visits the finished jobs: SQLite's plan is a search of the
    ``jobs_state`` index by state (the same index serves PostgreSQL)."""
    db = tmp_path / "jobs.db"
    from cloud_api.store._base import SCHEMA

    conn = sqlite3.connect(db)
    for statement in SCHEMA:
        conn.execute(statement.format(blob="BLOB", serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT state, COUNT(*) FROM jobs "
        "WHERE state IN ('queued', 'sent', 'accepted', 'printing') GROUP BY state"
    ).fetchall()
    conn.close()
    details = " ".join(str(row[-1]) for row in plan)
    assert "SEARCH jobs USING COVERING INDEX jobs_state (state=?)" in details, details


def test_the_api_purges_finished_jobs_in_the_background(tmp_path: Path) -> None:
    with make_stack(tmp_path, job_retention_s=0.5, retention_interval=0.2) as stack:
        handle = stack.add_agent("retention", "a1", ["POS-80C"])
        stack.wait_agent("retention", "a1")
        with stack.client() as http:
            done = http.post("/v1/branches/retention/printers/POS-80C/test")
            assert done.status_code == 200
            job_id = done.json()["job_id"]
            eventually(
                lambda: http.get(f"/v1/jobs/{job_id}").status_code != 200,
                timeout=20,
                interval=0.1,
                what="the printed job purged",
            )
            assert http.get(f"/v1/jobs/{job_id}").status_code == 404
        metrics = httpx.get(f"{stack.api_url}/metrics").text
        assert gauge(metrics, "printermaster_jobs_purged_total") >= 1
        handle.process.stop()
