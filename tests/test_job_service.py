"""The job service in one process, on SQLite and on PostgreSQL: how many store operations a
test print costs, forged replies, and a publish that fails after the job was stored ``sent``.

The broker is left out: a stand-in link records what would be published (or fails, to inject
the fault); the store, the registry, the hub and the service are the real ones. Replies are fed
to ``on_reply`` as the MQTT session would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from cloud_api._auth import Principal
from cloud_api._errors import ApiError
from cloud_api._registry import Registry
from cloud_api._settings import ApiSettings, MqttClientSettings
from cloud_api.jobs import JobService
from cloud_api.jobs._models import SubmitJob
from cloud_api.store import JobRecord, JobState, Store
from protocol import (
    Accepted,
    AgentStatus,
    Done,
    ErrorCode,
    Presence,
    PrinterState,
    Printing,
    PrintResult,
    RawContent,
    Reply,
    encode,
)

from ._wait import eventually_async

S = JobState
PRINTER = "POS-80C"
ADMIN = Principal(name="admin", admin=True)
AGENT_OF = {"b1": "a1", "b2": "a2"}


@dataclass
class Link:
    """Stands in for the MQTT session: records publishes; ``failures`` publishes fail first."""

    failures: int = 0
    published: list[tuple[str, bytes]] = field(default_factory=list)
    #: the payload of each request published, in order
    payloads: list[bytes] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish(self, topic: str, payload: bytes, properties: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise ApiError(ErrorCode.BROKER_UNAVAILABLE, "the API is not connected to the broker")
        self.published.append((topic, properties.CorrelationData))
        self.payloads.append(payload)


@dataclass
class Counts:
    writes: int = 0
    reads: int = 0


def count_operations(store: Store) -> Counts:
    """Count the store's operations: each write is one transaction, each read one query."""
    counts = Counts()

    def spy(name: str, kind: str) -> None:
        real: Callable[..., Any] = getattr(store, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            setattr(counts, kind, getattr(counts, kind) + 1)
            return await real(*args, **kwargs)

        setattr(store, name, counted)

    spy("_write", "writes")
    spy("_write_each", "writes")
    spy("_execute", "writes")
    spy("_fetch", "reads")
    return counts


@pytest.fixture
async def service(store: Store) -> AsyncIterator[JobService]:
    settings = ApiSettings(
        api_token="t",
        mqtt=MqttClientSettings(username="u", password="p"),
        accept_timeout=3.0,
        result_timeout=5.0,
    )
    registry = Registry()
    link = Link()
    link.ready.set()  # connected: a test print to an offline broker answers BROKER_UNAVAILABLE
    jobs = JobService(settings, store, link, registry)  # type: ignore[arg-type]
    for branch, agent in (("b1", "a1"), ("b2", "a2")):
        registry.on_presence(
            branch,
            agent,
            encode(
                Presence(
                    state="online", session=1, branch_id=branch, agent_id=agent, printers=[PRINTER]
                )
            ),
        )
        registry.on_status(
            branch,
            agent,
            encode(
                AgentStatus(
                    branch_id=branch,
                    agent_id=agent,
                    session=1,
                    printers=[PrinterState(name=PRINTER)],
                )
            ),
            None,
        )
    try:
        yield jobs
    finally:
        await jobs.aclose()


def link_of(service: JobService) -> Link:
    link = service.link
    assert isinstance(link, Link)
    return link


async def published(service: JobService, count: int = 1) -> bytes:
    """The correlation data of the ``count``-th request published."""
    link = link_of(service)
    await eventually_async(
        lambda: len(link.published) >= count, timeout=5, interval=0.001, what="published"
    )
    return link.published[count - 1][1]


async def settled(service: JobService) -> None:
    """Until every reply handed to the service has been applied."""
    await eventually_async(
        lambda: not service.flights.applying(), timeout=5, interval=0.001, what="replies applied"
    )


def printed() -> Done:
    return Done(at=time.time(), result=PrintResult(printer=PRINTER, bytes=512, duration_ms=1.0))


def replies() -> list[Reply]:
    return [Accepted(at=time.time()), Printing(at=time.time()), printed()]


async def timeline(service: JobService, job_id: str) -> list[tuple[JobState, str]]:
    return [(e.state, e.cause) for e in await service.timeline(job_id)]


async def test_a_test_print_is_one_write_to_create_and_one_per_reply(
    service: JobService, store: Store
) -> None:
    counts = count_operations(store)
    call = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER))
    correlation = await published(service)
    assert (counts.writes, counts.reads) == (1, 0)  # stored sent, then published
    job = await store.get_job(correlation.decode())
    assert job is not None and job.state is S.SENT and job.sent_by == "api-1"
    counts.reads = 0
    for reply in replies():  # one at a time, each applied before the next arrives
        service.on_reply("b1", "a1", correlation, encode(reply))
        await settled(service)
    final, events = await call
    assert final.state is S.PRINTED and final.result is not None
    # the last reply's operation also read the timeline the test print answers with
    assert (counts.writes, counts.reads) == (4, 0)
    assert events == await service.timeline(final.id)
    assert await timeline(service, final.id) == [
        (S.QUEUED, "submitted"),
        (S.SENT, "sent to agent a1"),
        (S.ACCEPTED, "accepted by the agent"),
        (S.PRINTING, "the agent started printing"),
        (S.PRINTED, "printed"),
    ]


async def test_replies_waiting_together_are_one_store_operation(
    service: JobService, store: Store
) -> None:
    counts = count_operations(store)
    call = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER))
    correlation = await published(service)
    for reply in replies():  # all three arrive before the first is applied
        service.on_reply("b1", "a1", correlation, encode(reply))
    final, events = await call
    assert final.state is S.PRINTED
    assert (counts.writes, counts.reads) == (2, 0)
    assert [e.state for e in events] == [S.QUEUED, S.SENT, S.ACCEPTED, S.PRINTING, S.PRINTED]
    assert [state for state, _ in await timeline(service, final.id)] == [
        S.QUEUED,
        S.SENT,
        S.ACCEPTED,
        S.PRINTING,
        S.PRINTED,
    ]


async def test_a_reply_from_another_branch_changes_nothing(
    service: JobService, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    call = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER))
    correlation = await published(service)
    job_id = correlation.decode()
    counts = count_operations(store)
    service.on_reply("b2", "a2", correlation, encode(printed()))  # forged: b2 answers a b1 job
    await settled(service)
    # the conditional update (which found no job of b2), then a read to say why in the log
    assert (counts.writes, counts.reads) == (1, 1)
    job = await store.get_job(job_id)
    assert job is not None and job.state is S.SENT
    assert f"dropping reply for job {job_id} from branch b2: it belongs to b1" in caplog.text
    # forged replies mixed with the real ones in one store operation change nothing either
    for branch, reply in [
        ("b2", printed()),
        ("b1", Accepted(at=time.time())),
        ("b2", printed()),
        ("b1", Printing(at=time.time())),
    ]:
        service.on_reply(branch, AGENT_OF[branch], correlation, encode(reply))
    await settled(service)
    job = await store.get_job(job_id)
    assert job is not None and job.state is S.PRINTING
    service.on_reply("b1", "a1", correlation, encode(printed()))
    final, _ = await call
    assert final.state is S.PRINTED
    assert [state for state, _ in await timeline(service, job_id)] == [
        S.QUEUED,
        S.SENT,
        S.ACCEPTED,
        S.PRINTING,
        S.PRINTED,
    ]


async def test_a_reply_from_another_agent_of_the_branch_changes_nothing(
    service: JobService, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Agent a3 of branch b1 answers a job sent to a1 on its own reply topic (the only one the
    broker lets it use): nothing changes, one line says why, and a1's replies still count."""
    call = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER))
    correlation = await published(service)
    job_id = correlation.decode()
    for reply in [Accepted(at=time.time()), printed()]:
        service.on_reply("b1", "a3", correlation, encode(reply))
    await settled(service)
    job = await store.get_job(job_id)
    assert job is not None and job.state is S.SENT
    assert [state for state, _ in await timeline(service, job_id)] == [S.QUEUED, S.SENT]
    forged = [r for r in caplog.records if "from agent a3" in r.getMessage()]
    assert len(forged) == 2  # one line per forged reply, no more
    assert "it was sent to agent a1" in forged[0].getMessage()
    for reply in replies():
        service.on_reply("b1", "a1", correlation, encode(reply))
    final, _ = await call
    assert final.state is S.PRINTED


async def test_a_reply_for_a_job_never_sent_changes_nothing(
    service: JobService, store: Store
) -> None:
    """Even the job's own agent cannot answer a job that was never sent to it (queued while the
    agent was offline): queued -> printed would report paper that never came out."""
    service.registry.on_presence(
        "b1", "a1", encode(Presence(state="offline", session=1, branch_id="b1", agent_id="a1"))
    )
    job, _ = await service.submit(
        ADMIN, SubmitJob(branch_id="b1", printer_id=PRINTER, content=RawContent(data=b"hello"))
    )
    assert job.state is S.QUEUED and job.sent_by is None
    for reply in replies():
        service.on_reply("b1", "a1", job.id.encode(), encode(reply))
    await settled(service)
    stored = await store.get_job(job.id)
    assert stored is not None and stored.state is S.QUEUED
    assert await timeline(service, job.id) == [(S.QUEUED, "submitted")]


async def test_a_failed_publish_puts_the_job_back_to_queued_and_the_sweeper_sends_it(
    service: JobService, store: Store
) -> None:
    link = link_of(service)
    link.failures = 1
    job, created = await service.submit(
        ADMIN, SubmitJob(branch_id="b1", printer_id=PRINTER, content=RawContent(data=b"hello"))
    )
    assert created and job.state is S.QUEUED and not link.published
    stored = await store.get_job(job.id)
    assert stored == job
    assert await timeline(service, job.id) == [
        (S.QUEUED, "submitted"),
        (S.SENT, "sent to agent a1"),
        (S.QUEUED, "not sent (the API is not connected to the broker); waiting to retry"),
    ]
    await service.sweep()
    correlation = await published(service)
    assert correlation == job.id.encode()
    for reply in replies():
        service.on_reply("b1", "a1", correlation, encode(reply))
    await settled(service)
    done: JobRecord | None = await store.get_job(job.id)
    assert done is not None and done.state is S.PRINTED
    assert [state for state, _ in await timeline(service, job.id)] == [
        S.QUEUED,
        S.SENT,
        S.QUEUED,
        S.SENT,
        S.ACCEPTED,
        S.PRINTING,
        S.PRINTED,
    ]


async def test_a_job_for_an_offline_agent_is_stored_queued_and_not_published(
    service: JobService, store: Store
) -> None:
    service.registry.on_presence(
        "b1", "a1", encode(Presence(state="offline", session=1, branch_id="b1", agent_id="a1"))
    )
    job, created = await service.submit(
        ADMIN, SubmitJob(branch_id="b1", printer_id=PRINTER, content=RawContent(data=b"hello"))
    )
    assert created and job.state is S.QUEUED and job.sent_by is None
    assert not link_of(service).published
    assert await timeline(service, job.id) == [(S.QUEUED, "submitted")]


async def test_a_test_print_finished_by_another_instance_reads_its_timeline(
    service: JobService, store: Store
) -> None:
    """The waiter hears nothing when another instance moves the job: it finds the final state
    on its once-a-second read and answers with the timeline from the store."""
    call = asyncio.create_task(service.test_print(ADMIN, "b1", PRINTER))
    job_id = (await published(service)).decode()
    service.on_reply("b1", "a1", job_id.encode(), encode(Accepted(at=time.time())))
    await settled(service)
    # another instance's sweeper gives up on it (this instance is not told)
    assert await store.transition(
        job_id, S.OUTCOME_UNKNOWN, {S.ACCEPTED}, "the agent accepted the job but never reported"
    )
    final, events = await asyncio.wait_for(call, 3)
    assert final.state is S.OUTCOME_UNKNOWN
    assert [e.state for e in events] == [S.QUEUED, S.SENT, S.ACCEPTED, S.OUTCOME_UNKNOWN]
