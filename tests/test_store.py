"""The job store, the same tests on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import pytest

from cloud_api.store import IdempotencyConflict, JobRecord, JobState, Step, Store
from protocol import new_job_id


def job(**overrides: object) -> JobRecord:
    now = time.time()
    fields: dict[str, object] = dict(
        id=new_job_id(),
        branch_id="b1",
        printer_id="P1",
        agent_id="a1",
        kind="print",
        state=JobState.QUEUED,
        params=b'{"printer":"P1"}',
        copies=1,
        created_at=now,
        updated_at=now,
        deadline=now + 600,
    )
    fields.update(overrides)
    return JobRecord(**fields)  # type: ignore[arg-type]


async def test_create_get_and_timeline(store: Store) -> None:
    created, new = await store.create_job(job(), "submitted")
    assert new
    assert await store.get_job(created.id) == created
    assert [e.state for e in await store.timeline(created.id)] == [JobState.QUEUED]
    assert await store.get_job("nope") is None


async def test_transitions_are_conditional_and_recorded(store: Store) -> None:
    created, _ = await store.create_job(job(), "submitted")
    assert await store.transition(
        created.id, JobState.SENT, {JobState.QUEUED}, "sent", sent_by="api-1"
    )
    # a second instance trying the same transition loses
    assert not await store.transition(created.id, JobState.SENT, {JobState.QUEUED}, "sent")
    assert await store.transition(
        created.id, JobState.PRINTED, {JobState.SENT}, "done", result=b'{"bytes":3}'
    )
    got = await store.get_job(created.id)
    assert got is not None and got.state is JobState.PRINTED and got.sent_by == "api-1"
    assert got.result == b'{"bytes":3}'
    events = await store.timeline(created.id)
    assert [(e.state, e.cause) for e in events] == [
        (JobState.QUEUED, "submitted"),
        (JobState.SENT, "sent"),
        (JobState.PRINTED, "done"),
    ]
    assert [e.at for e in events] == sorted(e.at for e in events)


async def test_a_job_created_sent_has_both_events_in_one_write(store: Store) -> None:
    sent = job(state=JobState.SENT, sent_by="api-1")
    created, new = await store.create_job(sent, "submitted", state_cause="sent to agent a1")
    assert new and await store.get_job(created.id) == sent
    events = await store.timeline(created.id)
    assert [(e.state, e.cause) for e in events] == [
        (JobState.QUEUED, "submitted"),
        (JobState.SENT, "sent to agent a1"),
    ]
    with pytest.raises(ValueError, match="cause"):
        await store.create_job(job(state=JobState.SENT), "submitted")


async def test_a_transition_can_require_the_jobs_branch(store: Store) -> None:
    created, _ = await store.create_job(job(branch_id="b1"), "submitted")
    sources = {JobState.QUEUED}
    assert await store.advance(created.id, JobState.SENT, sources, "x", in_branch="b2") is None
    assert (await store.get_job(created.id)).state is JobState.QUEUED  # type: ignore[union-attr]
    moved = await store.advance(created.id, JobState.SENT, sources, "sent", in_branch="b1")
    assert moved is not None and moved.state is JobState.SENT
    assert [e.state for e in await store.timeline(created.id)] == [JobState.QUEUED, JobState.SENT]


async def test_advance_many_applies_each_step_conditionally_in_order(store: Store) -> None:
    created, _ = await store.create_job(job(state=JobState.SENT), "submitted", state_cause="sent")
    S = JobState
    results = await store.advance_many(
        created.id,
        [
            Step(S.ACCEPTED, frozenset({S.SENT}), "accepted", "b1"),
            Step(S.PRINTED, frozenset({S.PRINTING}), "too early: not printing yet", "b1"),
            Step(S.FAILED, frozenset({S.ACCEPTED}), "forged", "b2"),
            Step(S.PRINTING, frozenset({S.ACCEPTED}), "printing", "b1"),
            Step(S.PRINTED, frozenset({S.PRINTING}), "printed", "b1", {"result": b"{}"}),
        ],
    )
    assert [r.state if r else None for r in results] == [
        S.ACCEPTED,
        None,
        None,
        S.PRINTING,
        S.PRINTED,
    ]
    assert results[-1] is not None and results[-1].result == b"{}"
    assert await store.get_job(created.id) == results[-1]
    events = await store.timeline(created.id)
    assert [(e.state, e.cause) for e in events] == [
        (S.QUEUED, "submitted"),
        (S.SENT, "sent"),
        (S.ACCEPTED, "accepted"),
        (S.PRINTING, "printing"),
        (S.PRINTED, "printed"),
    ]
    assert [e.at for e in events] == sorted(e.at for e in events)


async def test_idempotency_same_body_same_job_other_body_conflict(store: Store) -> None:
    first, new = await store.create_job(
        job(idempotency_scope="k1", idempotency_key="order-1", request_hash="h1"), "submitted"
    )
    again, new_again = await store.create_job(
        job(idempotency_scope="k1", idempotency_key="order-1", request_hash="h1"), "submitted"
    )
    assert new and not new_again and again.id == first.id
    with pytest.raises(IdempotencyConflict):
        await store.create_job(
            job(idempotency_scope="k1", idempotency_key="order-1", request_hash="h2"), "x"
        )
    # the same key in another caller's scope is another job
    other, new_other = await store.create_job(
        job(idempotency_scope="k2", idempotency_key="order-1", request_hash="h1"), "submitted"
    )
    assert new_other and other.id != first.id


async def test_concurrent_same_key_creates_one_job(store: Store) -> None:
    results = await asyncio.gather(
        *(
            store.create_job(
                job(idempotency_scope="s", idempotency_key="same", request_hash="h"), "submitted"
            )
            for _ in range(20)
        )
    )
    assert len({r[0].id for r in results}) == 1
    assert sum(1 for _, new in results if new) == 1


async def test_expired_idempotency_key_is_free_again(store: Store) -> None:
    old = time.time() - 25 * 3600
    first, _ = await store.create_job(
        job(idempotency_scope="s", idempotency_key="k", request_hash="h", created_at=old), "x"
    )
    second, new = await store.create_job(
        job(idempotency_scope="s", idempotency_key="k", request_hash="other"), "x"
    )
    assert new and second.id != first.id


async def test_listing_filters_and_pages(store: Store) -> None:
    ids = []
    for i in range(7):
        created, _ = await store.create_job(job(branch_id="b1" if i % 2 else "b2"), "x")
        ids.append(created.id)
    await store.transition(ids[1], JobState.CANCELLED, {JobState.QUEUED}, "x")
    b1 = [j.id for j in await store.list_jobs(branches=["b1"])]
    assert b1 == sorted((ids[i] for i in (1, 3, 5)), reverse=True)
    page1 = await store.list_jobs(branches=None, limit=4)
    page2 = await store.list_jobs(branches=None, limit=4, after=page1[-1].id)
    assert [j.id for j in page1 + page2] == sorted(ids, reverse=True)
    cancelled = await store.list_jobs(branches=["b1", "b2"], state=JobState.CANCELLED)
    assert [j.id for j in cancelled] == [ids[1]]
    assert await store.list_jobs(branches=[]) == []
    queued = await store.jobs_in_states({JobState.QUEUED}, branch_id="b2")
    assert [j.id for j in queued] == [ids[i] for i in (0, 2, 4, 6)]
    assert (await store.count_by_state())["queued"] == 6


async def test_ping(store: Store) -> None:
    await store.ping()
