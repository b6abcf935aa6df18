"""Print jobs end to end through the API, on SQLite and on PostgreSQL: lifecycle, idempotency,
deadlines, cancel, SSE, validation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from branch_agent._render import render_content
from printermaster.stack import AgentHandle, Stack
from protocol import validate_content

from ._wait import eventually
from .conftest import job_files, make_stack, unique_id
from .jobs_helpers import receipt, submit, wait_state
from .pg import postgres_url


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def job_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack per store backend; the same tests run against both."""
    root = tmp_path_factory.mktemp(f"jobs-{request.param}")
    overrides: dict[str, Any] = {"sweep_interval": 0.2, "sent_grace": 1.0}
    if request.param == "postgres":
        overrides["store_url"] = postgres_url(request)
    with make_stack(root, **overrides) as stack:
        yield stack


@pytest.fixture
def agent(job_stack: Stack) -> Iterator[AgentHandle]:
    handle = job_stack.add_agent(unique_id("b"), unique_id("a"), ["POS-80C"])
    job_stack.wait_agent(handle.branch_id, handle.agent_id)
    yield handle
    handle.process.stop()


def set_printer(agent: AgentHandle, **state: Any) -> None:
    directory = agent.printer_dir("POS-80C")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state.json").write_text(json.dumps(state))


def test_job_prints_with_a_full_timeline(job_stack: Stack, agent: AgentHandle) -> None:
    content = receipt("Table 7")
    with job_stack.client(timeout=10) as http:
        response = submit(http, agent.branch_id, content=content, copies=2)
        assert response.status_code == 202, response.text
        job = response.json()
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["state"] in {"queued", "sent", "accepted", "printing", "printed"}
        done = wait_state(http, job["id"])
    assert done["state"] == "printed", done
    # a fast printer: the agent folds accepted and printing into its final (a slow one shows
    # them: test_sse_stream_shows_every_stage_in_order)
    assert [e["state"] for e in done["timeline"]] == ["queued", "sent", "printed"]
    times = [e["at"] for e in done["timeline"]]
    assert times == sorted(times)
    (printed,) = job_files(agent)
    assert printed.stem == job["id"]
    expected = render_content(validate_content(content), copies=2)
    assert printed.read_bytes() == expected
    assert done["result"]["bytes"] == len(expected)


def test_same_key_same_body_is_the_same_job_other_body_is_409(
    job_stack: Stack, agent: AgentHandle
) -> None:
    with job_stack.client(timeout=10) as http:
        first = submit(http, agent.branch_id, key="order-1042")
        again = submit(http, agent.branch_id, key="order-1042")
        other = submit(http, agent.branch_id, content=receipt("Table 8"), key="order-1042")
        assert first.status_code == 202 and again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "CONFLICT"
        assert other.json()["error"]["job_id"] == first.json()["id"]
        wait_state(http, first.json()["id"])
    assert [f.stem for f in job_files(agent)] == [first.json()["id"]]


def _jobs_submitted_twice_concurrently_print_once(
    count: int, job_stack: Stack, agent: AgentHandle
) -> None:
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(
            base_url=job_stack.api_url,
            limits=limits,
            timeout=60,
            headers={"Authorization": f"Bearer {job_stack.api_token}"},
        ) as client:
            semaphore = asyncio.Semaphore(100)

            async def one(i: int) -> httpx.Response:
                body = {
                    "branch_id": agent.branch_id,
                    "printer_id": "POS-80C",
                    "content": receipt(f"Order {i}"),
                }
                async with semaphore:
                    for attempt in range(3):
                        try:
                            return await client.post(
                                "/v1/jobs", json=body, headers={"Idempotency-Key": f"k-{i}"}
                            )
                        except httpx.TransportError:
                            # a connection lost mid-request: the key makes the retry safe,
                            # which is what a dashboard does too
                            if attempt == 2:
                                raise
                    raise AssertionError("unreachable")

            return await asyncio.gather(*(one(i) for i in range(count) for _ in range(2)))

    responses = asyncio.run(run())
    assert all(r.status_code in (200, 202) for r in responses), [
        r.text for r in responses if r.status_code not in (200, 202)
    ][:3]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == count
    assert sum(r.status_code == 202 for r in responses) == count
    with job_stack.client(timeout=10) as http:
        with contextlib.suppress(AssertionError):  # the states below say what is missing
            eventually(lambda: len(job_files(agent)) >= count, timeout=60, interval=0.2)
        states = [wait_state(http, job_id, timeout=30)["state"] for job_id in sorted(ids)]
    assert states == ["printed"] * count
    assert sorted(f.stem for f in job_files(agent)) == sorted(ids)


def test_hundred_jobs_submitted_twice_concurrently_print_once(
    job_stack: Stack, agent: AgentHandle
) -> None:
    """The thousand-job run below at a tenth of its size, in the default suite."""
    _jobs_submitted_twice_concurrently_print_once(100, job_stack, agent)


@pytest.mark.slow
def test_thousand_jobs_submitted_twice_concurrently_print_once(
    job_stack: Stack, agent: AgentHandle
) -> None:
    _jobs_submitted_twice_concurrently_print_once(1000, job_stack, agent)


def test_job_for_offline_agent_waits_then_prints(job_stack: Stack, agent: AgentHandle) -> None:
    agent.process.stop()
    job_stack.wait_agent(agent.branch_id, agent.agent_id, online=False)
    with job_stack.client(timeout=10) as http:
        job = submit(http, agent.branch_id, expire_after=60).json()
        time.sleep(1.0)  # not eventually: proves the job stays queued while its agent is away
        assert http.get(f"/v1/jobs/{job['id']}").json()["state"] == "queued"
        agent.process.start()
        done = wait_state(http, job["id"])
    assert done["state"] == "printed"
    assert [f.stem for f in job_files(agent)] == [job["id"]]


def test_job_whose_deadline_passes_offline_expires_and_never_prints(
    job_stack: Stack, agent: AgentHandle
) -> None:
    agent.process.stop()
    job_stack.wait_agent(agent.branch_id, agent.agent_id, online=False)
    with job_stack.client(timeout=10) as http:
        job = submit(http, agent.branch_id, expire_after=2).json()
        wait_state(http, job["id"], {"expired"}, timeout=10)  # the sweeper, agent still away
        agent.process.start()
        job_stack.wait_agent(agent.branch_id, agent.agent_id)
        time.sleep(1.0)  # not eventually: proves the agent that came back does not print it
        final = wait_state(http, job["id"])
    assert final["state"] == "expired"
    assert job_files(agent) == []


def test_cancel_before_delivery_never_prints(job_stack: Stack, agent: AgentHandle) -> None:
    agent.process.stop()
    job_stack.wait_agent(agent.branch_id, agent.agent_id, online=False)
    with job_stack.client(timeout=10) as http:
        job = submit(http, agent.branch_id).json()
        cancelled = http.delete(f"/v1/jobs/{job['id']}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"
        agent.process.start()
        job_stack.wait_agent(agent.branch_id, agent.agent_id)
        time.sleep(1.0)  # not eventually: proves the agent that came back does not print it
        assert http.get(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled"
        again = http.delete(f"/v1/jobs/{job['id']}")
        assert again.status_code == 200  # cancelling a cancelled job is idempotent
    assert job_files(agent) == []


def test_cancel_of_a_job_waiting_at_the_agent(job_stack: Stack, agent: AgentHandle) -> None:
    set_printer(agent, delay_s=2)
    with job_stack.client(timeout=10) as http:
        first = submit(http, agent.branch_id, content=receipt("first")).json()
        second = submit(http, agent.branch_id, content=receipt("second")).json()
        wait_state(http, first["id"], {"printing"})
        wait_state(http, second["id"], {"accepted"})
        cancelled = http.delete(f"/v1/jobs/{second['id']}")
        assert cancelled.status_code == 200, cancelled.text
        too_late = http.delete(f"/v1/jobs/{first['id']}")
        assert too_late.status_code == 409
        assert wait_state(http, first["id"])["state"] == "printed"
        assert wait_state(http, second["id"])["state"] == "cancelled"
    assert [f.stem for f in job_files(agent)] == [first["id"]]


def test_sse_stream_shows_every_stage_in_order(job_stack: Stack, agent: AgentHandle) -> None:
    set_printer(agent, delay_s=1.5)  # longer than the agent holds progress back (0.5 s)
    with job_stack.client(timeout=20) as http:
        job = submit(http, agent.branch_id).json()
        events = []
        with http.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line.removeprefix("data:").strip()))
    assert [e["state"] for e in events] == ["queued", "sent", "accepted", "printing", "printed"]


def test_invalid_content_is_422_naming_the_field(job_stack: Stack, agent: AgentHandle) -> None:
    bad_barcode = {
        "type": "document",
        "blocks": [{"type": "barcode", "symbology": "EAN13", "data": "4006381333932"}],
    }
    cases = [
        (bad_barcode, "$.content.blocks[0].data"),
        (
            {"type": "document", "blocks": [{"type": "text", "text": "x", "width": 9}]},
            "$.content.blocks[0].width",
        ),
        ({"type": "document", "blocks": [{"type": "text", "txt": "x"}]}, "$.content.blocks[0]"),
        ({"type": "pdf"}, "$.content.type"),
    ]
    with job_stack.client(timeout=10) as http:
        for content, field in cases:
            response = submit(http, agent.branch_id, content=content)
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["code"] == "INVALID_REQUEST"
            assert error["field"] == field, error
        response = submit(http, agent.branch_id, copies=11)
        assert response.status_code == 422 and response.json()["error"]["field"] == "$.copies"
        response = http.post(
            "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        unknown = submit(http, agent.branch_id, printer_id="NOPE")
        assert unknown.status_code == 404
    assert job_files(agent) == []


def test_listing_filters_and_pages(job_stack: Stack, agent: AgentHandle) -> None:
    with job_stack.client(timeout=10) as http:
        ids = [
            submit(http, agent.branch_id, content=receipt(f"#{i}")).json()["id"] for i in range(5)
        ]
        for job_id in ids:
            wait_state(http, job_id)
        page1 = http.get("/v1/jobs", params={"branch_id": agent.branch_id, "limit": 3}).json()
        page2 = http.get(
            "/v1/jobs",
            params={"branch_id": agent.branch_id, "limit": 3, "after": page1["next_after"]},
        ).json()
        listed = [j["id"] for j in page1["jobs"] + page2["jobs"]]
        assert listed == sorted(ids, reverse=True)
        assert page2["next_after"] is None
        printed = http.get(
            "/v1/jobs", params={"branch_id": agent.branch_id, "state": "printed"}
        ).json()
        assert {j["id"] for j in printed["jobs"]} == set(ids)
        none = http.get("/v1/jobs", params={"branch_id": agent.branch_id, "state": "queued"})
        assert none.json()["jobs"] == []
        assert http.get("/v1/jobs", params={"state": "bogus"}).status_code in (400, 422)
        assert http.get("/v1/jobs/0123").status_code == 404
