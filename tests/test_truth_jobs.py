"""Truthful job states in the job service, on SQLite and PostgreSQL: final means final (a late
reply is an event, never a transition), a reply never moves a job that was never sent, and a
print job held by its agent for its printer is ``waiting_printer`` with the printer's condition.

The broker is left out as in ``test_job_service.py``: replies are fed to ``on_reply``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import msgspec
import pytest

from cloud_api._errors import ApiError
from cloud_api.jobs import JobService
from cloud_api.jobs._models import SubmitJob, job_view
from cloud_api.store import JobRecord, JobState, Store, open_store
from protocol import (
    Accepted,
    AgentStatus,
    Done,
    ErrorCode,
    Failed,
    Presence,
    PrinterState,
    Printing,
    RawContent,
    Waiting,
    encode,
    error_info,
)

from .test_job_service import ADMIN, PRINTER, link_of, printed, published, settled
from .test_job_service import service as service

S = JobState


async def _sent_job(service: JobService, expire_after: float = 60.0) -> JobRecord:
    before = len(link_of(service).published)
    job, created = await service.submit(
        ADMIN,
        SubmitJob(
            branch_id="b1",
            printer_id=PRINTER,
            content=RawContent(data=b"ticket"),
            expire_after=expire_after,
        ),
    )
    assert created and job.state is S.SENT
    assert await published(service, before + 1) == job.id.encode()
    return job


async def _reply(service: JobService, job_id: str, *replies: object) -> None:
    for reply in replies:
        service.on_reply("b1", "a1", job_id.encode(), encode(reply))  # type: ignore[arg-type]
    await settled(service)


async def _job(store: Store, job_id: str) -> JobRecord:
    job = await store.get_job(job_id)
    assert job is not None
    return job


async def test_a_late_done_after_expired_is_an_event_not_a_transition(
    service: JobService, store: Store
) -> None:
    job = await _sent_job(service)
    assert await store.transition(job.id, S.EXPIRED, {S.SENT}, "the agent did not take the job")
    await _reply(service, job.id, Accepted(at=time.time()), Printing(at=time.time()), printed())
    after = await _job(store, job.id)
    assert after.state is S.EXPIRED  # final means final
    events = await store.timeline(job.id)
    assert [e.state for e in events if e.kind == "transition"] == [S.QUEUED, S.SENT, S.EXPIRED]
    late = [e for e in events if e.kind == "late_reply"]
    assert [e.cause for e in late] == [
        "the agent reports it started printing after the job was reported expired",
        "the agent reports printed after the job was reported expired",
    ]
    view = job_view(after, events)
    assert view.late_result is not None and view.late_result.reported == "printed"
    assert view.late_result.result is not None and view.late_result.result.bytes == 512
    assert view.disputed  # paper and state may disagree: the dashboard must say so


async def test_a_late_reply_never_changes_outcome_unknown_or_failed(
    service: JobService, store: Store
) -> None:
    job = await _sent_job(service)
    await _reply(service, job.id, Accepted(at=time.time()))
    assert await store.transition(job.id, S.OUTCOME_UNKNOWN, {S.ACCEPTED}, "no result")
    await _reply(service, job.id, printed())
    after = await _job(store, job.id)
    assert after.state is S.OUTCOME_UNKNOWN
    view = job_view(after, await store.timeline(job.id))
    # the agent's ledger resolves the unknown: shown, not applied, and not a dispute
    assert view.late_result is not None and view.late_result.reported == "printed"
    assert not view.disputed

    other = await _sent_job(service)
    await _reply(
        service,
        other.id,
        Failed(at=time.time(), error=error_info(ErrorCode.PAPER_OUT, "out of paper")),
    )
    await _reply(service, other.id, printed())
    assert (await _job(store, other.id)).state is S.FAILED


async def test_a_repeated_final_reply_is_not_a_late_event(
    service: JobService, store: Store
) -> None:
    job = await _sent_job(service)
    await _reply(service, job.id, Accepted(at=time.time()), printed())
    await _reply(service, job.id, printed())  # answered again from the agent's ledger
    events = await store.timeline(job.id)
    assert all(e.kind == "transition" for e in events)
    assert job_view(await _job(store, job.id), events).late_result is None


async def test_a_reply_never_moves_a_job_that_was_never_sent(
    service: JobService, store: Store
) -> None:
    service.registry.on_presence(
        "b1", "a1", encode(Presence(state="offline", session=1, branch_id="b1", agent_id="a1"))
    )
    job, _ = await service.submit(
        ADMIN, SubmitJob(branch_id="b1", printer_id=PRINTER, content=RawContent(data=b"x"))
    )
    assert job.state is S.QUEUED
    await _reply(service, job.id, Accepted(at=time.time()), Printing(at=time.time()), printed())
    assert (await _job(store, job.id)).state is S.QUEUED
    assert [e.state for e in await store.timeline(job.id)] == [S.QUEUED]


async def test_a_held_job_waits_for_its_printer_then_prints(
    service: JobService, store: Store
) -> None:
    job = await _sent_job(service)
    paper_out = error_info(ErrorCode.PAPER_OUT, "printer is out of paper")
    cover = error_info(ErrorCode.COVER_OPEN, "printer cover is open")
    await _reply(
        service, job.id, Accepted(at=time.time()), Waiting(at=time.time(), error=paper_out)
    )
    held = await _job(store, job.id)
    assert held.state is S.WAITING_PRINTER
    view = job_view(held)
    assert view.waiting_for is not None and view.waiting_for.code is ErrorCode.PAPER_OUT
    await _reply(service, job.id, Waiting(at=time.time(), error=cover))  # the condition changed
    view = job_view(await _job(store, job.id))
    assert view.state is S.WAITING_PRINTER
    assert view.waiting_for is not None and view.waiting_for.code is ErrorCode.COVER_OPEN
    # a resend answered "accepted" from the agent's ledger does not move it back
    await _reply(service, job.id, Accepted(at=time.time()))
    assert (await _job(store, job.id)).state is S.WAITING_PRINTER
    await _reply(service, job.id, Printing(at=time.time()), printed())
    done = await _job(store, job.id)
    assert done.state is S.PRINTED
    view = job_view(done)
    assert view.error is None and view.waiting_for is None
    assert [(e.state, e.cause) for e in await store.timeline(job.id)][2:] == [
        (S.ACCEPTED, "accepted by the agent"),
        (S.WAITING_PRINTER, "waiting for the printer: PAPER_OUT: printer is out of paper"),
        (S.WAITING_PRINTER, "waiting for the printer: COVER_OPEN: printer cover is open"),
        (S.PRINTING, "the agent started printing"),
        (S.PRINTED, "printed"),
    ]


async def test_a_waiting_job_can_be_cancelled_and_expires_at_the_agent(
    service: JobService, store: Store
) -> None:
    job = await _sent_job(service)
    offline = error_info(ErrorCode.PRINTER_OFFLINE, "printer is offline")
    await _reply(service, job.id, Accepted(at=time.time()), Waiting(at=time.time(), error=offline))
    expired = Failed(at=time.time(), error=error_info(ErrorCode.EXPIRED, "deadline passed"))
    await _reply(service, job.id, expired)
    assert (await _job(store, job.id)).state is S.EXPIRED
    # and stays so: the agent's late done is an event only
    await _reply(service, job.id, Done(at=time.time()))
    assert (await _job(store, job.id)).state is S.EXPIRED


# --- a test print that answers 504 never prints afterwards ---------------------------------


async def _request_published(service: JobService, count: int) -> tuple[str, bytes]:
    await published(service, count)
    return link_of(service).published[count - 1]


async def test_504_after_a_confirmed_cancel_is_retryable_and_the_key_retries(
    service: JobService, store: Store
) -> None:
    service.settings = msgspec.structs.replace(service.settings, accept_timeout=0.3)
    call = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER, idempotency_key="t-1"))
    job_id = (await published(service, 1)).decode()
    # no accepted in time: the API cancels the request at the agent before it answers
    _, cancel = await _request_published(service, 2)
    assert cancel != job_id.encode()
    service.on_reply("b1", "a1", cancel, encode(Accepted(at=time.time())))
    service.on_reply("b1", "a1", cancel, encode(Done(at=time.time())))
    with pytest.raises(ApiError) as caught:
        await call
    assert caught.value.code is ErrorCode.AGENT_UNREACHABLE
    assert caught.value.retryable is True  # the agent confirmed: it never prints this job
    job = await _job(store, job_id)
    assert job.state is S.CANCELLED
    # the same key again is a new attempt, pointing at the old one
    again = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER, idempotency_key="t-1"))
    retry_id = (await published(service, 3)).decode()
    assert retry_id != job_id
    await _reply(service, retry_id, Accepted(at=time.time()), printed())
    final, _ = await again
    assert final.id == retry_id and final.state is S.PRINTED and final.retry_of == job_id
    # and once more: the printed job is the answer, nothing new is sent
    same, _ = await service.test_print(ADMIN, "b1", PRINTER, idempotency_key="t-1")
    assert same.id == retry_id and len(link_of(service).published) == 3


async def test_504_without_an_answer_to_the_cancel_is_not_retryable(
    service: JobService, store: Store
) -> None:
    service.settings = msgspec.structs.replace(service.settings, accept_timeout=0.3)
    call = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER))
    job_id = (await published(service, 1)).decode()
    await published(service, 2)  # the cancel, which nobody answers
    with pytest.raises(ApiError) as caught:
        await call
    assert caught.value.code is ErrorCode.AGENT_UNREACHABLE
    assert caught.value.retryable is False
    assert caught.value.job_id == job_id
    # the request's deadline was the accept timeout: the agent refuses it past that
    job = await _job(store, job_id)
    assert job.deadline - job.created_at == pytest.approx(0.3)


async def test_a_test_print_answered_conflict_to_the_cancel_waits_for_its_result(
    service: JobService, store: Store
) -> None:
    service.settings = msgspec.structs.replace(service.settings, accept_timeout=0.3)
    call = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER))
    job_id = (await published(service, 1)).decode()
    _, cancel = await _request_published(service, 2)
    conflict = error_info(ErrorCode.CONFLICT, "job is printing: too late to cancel")
    service.on_reply("b1", "a1", cancel, encode(Failed(at=time.time(), error=conflict)))
    await _reply(service, job_id, Accepted(at=time.time()), Printing(at=time.time()), printed())
    final, _ = await call
    assert final.state is S.PRINTED


async def test_504_when_the_agents_cancelled_reply_comes_first_is_still_retryable(
    service: JobService, store: Store
) -> None:
    """The agent answers the job itself ``failed CANCELLED`` before it confirms the cancel: the
    job is cancelled either way, the 504 is retryable and the key makes a new attempt."""
    service.settings = msgspec.structs.replace(service.settings, accept_timeout=0.3)
    call = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER, idempotency_key="t-2"))
    job_id = (await published(service, 1)).decode()
    _, cancel = await _request_published(service, 2)
    cancelled = error_info(ErrorCode.CANCELLED, "cancelled by job.cancel")
    await _reply(service, job_id, Failed(at=time.time(), error=cancelled))
    service.on_reply("b1", "a1", cancel, encode(Done(at=time.time())))
    with pytest.raises(ApiError) as caught:
        await call
    assert caught.value.code is ErrorCode.AGENT_UNREACHABLE and caught.value.retryable
    job = await _job(store, job_id)
    assert job.state is S.CANCELLED
    assert job_view(job).error is not None
    assert job_view(job).error.code is ErrorCode.AGENT_UNREACHABLE  # type: ignore[union-attr]
    again = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER, idempotency_key="t-2"))
    retry_id = (await published(service, 3)).decode()
    await _reply(service, retry_id, Accepted(at=time.time()), printed())
    final, _ = await again
    assert final.retry_of == job_id and final.state is S.PRINTED


async def test_a_cancelled_test_print_is_tried_again_under_its_key(
    service: JobService, store: Store
) -> None:
    """The API sent the cancel after a 504 and died before it could record why: the agent's
    ``failed CANCELLED`` ends the job. It never printed, so the same key tries again."""
    service.settings = msgspec.structs.replace(service.settings, accept_timeout=0.3)
    call = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER, idempotency_key="t-3"))
    job_id = (await published(service, 1)).decode()
    await published(service, 2)  # the cancel; its answer is lost with the API
    with pytest.raises(ApiError):
        await call
    cancelled = error_info(ErrorCode.CANCELLED, "cancelled by job.cancel")
    await _reply(service, job_id, Failed(at=time.time(), error=cancelled))
    assert (await _job(store, job_id)).state is S.CANCELLED
    again = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER, idempotency_key="t-3"))
    retry_id = (await published(service, 3)).decode()
    await _reply(service, retry_id, Accepted(at=time.time()), printed())
    final, _ = await again
    assert final.retry_of == job_id and final.state is S.PRINTED


async def test_a_database_of_the_previous_schema_gains_the_new_columns(tmp_path: Path) -> None:
    """A jobs.db written before late results, retries and event kinds opens, keeps its jobs,
    and takes the new columns."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SCHEMA)
    conn.execute(
        "INSERT INTO jobs VALUES ('j1','b1','P','a1','print','printed',x'7b7d',1,1.0,2.0,9.0,"
        "'api-1',NULL,NULL,NULL,NULL,NULL)"
    )
    conn.execute("INSERT INTO job_events (job_id, state, at, cause) VALUES ('j1','queued',1,'s')")
    conn.commit()
    conn.close()
    store = await open_store(f"sqlite://{path}")
    try:
        job = await store.get_job("j1")
        assert job is not None and job.state is S.PRINTED and job.late is None
        assert [(e.state, e.kind) for e in await store.timeline("j1")] == [(S.QUEUED, "transition")]
        assert await store.record_late("j1", "b1", S.PRINTED, b"{}", "late")
    finally:
        await store.close()


_OLD_SCHEMA = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, branch_id TEXT NOT NULL, printer_id TEXT NOT NULL,
    agent_id TEXT, kind TEXT NOT NULL, state TEXT NOT NULL, params BLOB NOT NULL,
    copies INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL, deadline DOUBLE PRECISION NOT NULL, sent_by TEXT,
    result BLOB, error BLOB, idempotency_scope TEXT, idempotency_key TEXT, request_hash TEXT);
CREATE TABLE job_events (job_id TEXT NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, cause TEXT NOT NULL);
"""


async def test_the_event_stream_shows_the_wait_for_the_printer(
    service: JobService, store: Store
) -> None:
    job = await _sent_job(service)
    paper_out = error_info(ErrorCode.PAPER_OUT, "printer is out of paper")
    await _reply(
        service, job.id, Accepted(at=time.time()), Waiting(at=time.time(), error=paper_out)
    )
    seen: list[tuple[JobState, str]] = []

    async def follow() -> None:
        async for event in service.events(ADMIN, job.id):
            seen.append((event.state, event.cause))

    stream = asyncio.create_task(follow())
    await _reply(service, job.id, Printing(at=time.time()), printed())
    await asyncio.wait_for(stream, 5)
    assert [state for state, _ in seen] == [
        S.QUEUED,
        S.SENT,
        S.ACCEPTED,
        S.WAITING_PRINTER,
        S.PRINTING,
        S.PRINTED,
    ]
    assert seen[3][1] == "waiting for the printer: PAPER_OUT: printer is out of paper"


async def test_a_print_job_for_a_blocked_printer_is_sent_not_refused(
    service: JobService, store: Store
) -> None:
    """The agent holds print jobs for a printer that is out of paper: the API sends them (a
    test print, which is not held, is refused at once)."""
    service.registry.on_status(
        "b1",
        "a1",
        encode(
            AgentStatus(
                branch_id="b1",
                agent_id="a1",
                session=1,
                at=time.time(),
                printers=[PrinterState(name=PRINTER, paper="out")],
            )
        ),
        None,
    )
    job = await _sent_job(service)
    assert (await _job(store, job.id)).state is S.SENT
    with pytest.raises(ApiError) as caught:
        await service.test_print(ADMIN, "b1", PRINTER)
    assert caught.value.code is ErrorCode.PAPER_OUT
