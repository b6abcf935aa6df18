"""The read-only endpoints behind the console: the searchable, paged branch view (at 1,000
branches), job search on both store backends, and the live event feed — unit-level against
the real registry, hub and store, then over HTTP against the real stack with a scoped key."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from typing import Any

import httpx
import msgspec
import pytest

from cloud_api._registry import Registry
from cloud_api.console import STATIC_DIR, EventFeed, FeedEvent, branch_page, search_jobs
from cloud_api.console._branches import branch_detail
from cloud_api.jobs._inflight import InFlight
from cloud_api.store import JobRecord, JobState, Store
from printermaster.stack import Stack
from protocol import AgentStatus, ErrorCode, Presence, PrinterState, encode, new_job_id

from .conftest import AgentFactory, unique_id

# --- a registry fed with real wire messages ---------------------------------------------------


def announce(
    registry: Registry,
    branch: str,
    agent: str,
    *,
    state: str = "online",
    session: int = 1,
    at: float | None = None,
    printers: dict[str, dict[str, Any]] | None = None,
    live: bool = True,
) -> None:
    """A birth (and its first status) or a goodbye, as the agent sends them; ``live=False``: as
    the broker hands them to an API that starts later (retained), which measures no clock
    offset from them."""
    at = time.time() if at is None else at
    printers = {"POS-1": {}} if printers is None else printers
    registry.on_presence(
        branch,
        agent,
        encode(
            Presence(
                state=state,  # type: ignore[arg-type]
                session=session,
                branch_id=branch,
                agent_id=agent,
                at=at,
                printers=list(printers),
            )
        ),
        live=live,
    )
    if state == "online":
        registry.on_status(
            branch,
            agent,
            encode(
                AgentStatus(
                    branch_id=branch,
                    agent_id=agent,
                    session=session,
                    at=at,
                    printers=[
                        PrinterState(name=n, **{"paper": "ok", **p}) for n, p in printers.items()
                    ],
                )
            ),
            90,
            live=live,
        )


def fleet_of(n: int) -> Registry:
    """``n`` branches ``br-0000``...; every 10th has its printer out of paper, every 25th its
    agent offline."""
    registry = Registry()
    for i in range(n):
        branch = f"br-{i:04d}"
        announce(registry, branch, f"ag-{i:04d}", printers={"POS-1": {}, "KITCHEN": {}})
        if i % 10 == 3:
            announce(
                registry, branch, f"ag-{i:04d}", printers={"POS-1": {"paper": "out"}, "KITCHEN": {}}
            )
        if i % 25 == 7:
            announce(registry, branch, f"ag-{i:04d}", state="offline")
    return registry


def see_all(_: str) -> bool:
    return True


def test_branch_page_pages_through_1000_branches_once_each() -> None:
    registry = fleet_of(1000)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = branch_page(registry, may_see=see_all, after=after, limit=25)
        assert page.totals.branches == 1000 and page.matched == 1000
        assert len(page.branches) <= 25
        seen += [b.branch_id for b in page.branches]
        pages += 1
        after = page.next_after
        if after is None:
            break
    assert seen == sorted(seen) == [f"br-{i:04d}" for i in range(1000)]
    assert pages == 40
    totals = page.totals
    assert totals.agents_offline == 40 and totals.agents_online == 960
    assert totals.printers.total == 2000 and totals.printers.paper_out == 100


def test_branch_page_searches_branch_agent_and_printer_ids_and_filters_problems() -> None:
    registry = fleet_of(200)
    announce(registry, "br-0042", "ag-0042", printers={"BAR-Terrace": {}})
    assert [
        b.branch_id for b in branch_page(registry, may_see=see_all, query="BR-012").branches
    ] == [f"br-012{i}" for i in range(10)]
    by_agent = branch_page(registry, may_see=see_all, query="ag-0199")
    assert [b.branch_id for b in by_agent.branches] == ["br-0199"]
    by_printer = branch_page(registry, may_see=see_all, query="terrace")
    assert [b.branch_id for b in by_printer.branches] == ["br-0042"]
    assert by_printer.totals.branches == 200  # totals ignore the search

    problems = branch_page(registry, may_see=see_all, problems_only=True, limit=200)
    ids = {b.branch_id for b in problems.branches}
    expected = {f"br-{i:04d}" for i in range(200) if i % 10 == 3 or i % 25 == 7}
    assert ids == expected and problems.matched == len(expected)
    assert all(not b.healthy for b in problems.branches)

    visible = branch_page(registry, may_see=lambda b: b in {"br-0001", "br-0002"})
    assert [b.branch_id for b in visible.branches] == ["br-0001", "br-0002"]
    assert visible.totals.branches == 2


def test_branch_detail_says_why_and_since_when() -> None:
    registry = Registry()
    born = time.time() - 120  # an agent online for 2 minutes when the API started
    announce(registry, "b1", "a1", at=born, printers={"P1": {}, "P2": {"paper": "out"}}, live=False)
    announce(registry, "b1", "a2", at=born, printers={"P3": {"paper": "near_end"}}, live=False)
    detail = branch_detail(registry, "b1", time.monotonic())
    a1 = detail.agents[0]
    assert a1.online and a1.state == "online"
    assert a1.since is not None and abs(a1.since - born) < 2
    conditions = {p.printer_id: (p.condition, list(p.problems)) for p in detail.printers}
    assert conditions == {
        "P1": ("ready", []),
        "P2": ("down", ["paper_out"]),
        "P3": ("warning", ["paper_near_end"]),
    }
    gone = time.time() - 30  # it said goodbye half a minute before the API started
    announce(registry, "b1", "a1", state="offline", at=gone, live=False)
    detail = branch_detail(registry, "b1", time.monotonic())
    a1 = detail.agents[0]
    assert not a1.online and a1.state == "offline"
    assert a1.since is not None and abs(a1.since - gone) < 2
    assert {p.printer_id: p.condition for p in detail.printers}["P1"] == "down"
    assert not detail.healthy


def test_branch_page_at_1000_branches_is_cheap() -> None:
    """Not a timed assertion: the figure is printed (``-s``) for the docs."""
    registry = fleet_of(1000)
    start = time.perf_counter()
    runs = 20
    for _ in range(runs):
        page = branch_page(registry, may_see=see_all, query="", limit=25)
    per_page = (time.perf_counter() - start) / runs
    start = time.perf_counter()
    for _ in range(runs):
        branch_page(registry, may_see=see_all, query="kitchen-none", limit=25)
    per_search = (time.perf_counter() - start) / runs
    feed = EventFeed(registry)
    feed.scan()
    start = time.perf_counter()
    for _ in range(runs):
        feed.scan()
    per_scan = (time.perf_counter() - start) / runs
    size = len(json.dumps(msgspec.to_builtins(page)))
    print(
        f"\n1000 branches: page of 25 {per_page * 1000:.1f} ms, {size} bytes; "
        f"search over all {per_search * 1000:.1f} ms; feed scan {per_scan * 1000:.1f} ms"
    )
    assert len(page.branches) == 25


# --- job search, on SQLite and PostgreSQL -----------------------------------------------------


def job(**overrides: Any) -> JobRecord:
    now = time.time()
    fields: dict[str, Any] = dict(
        id=new_job_id(),
        branch_id="b1",
        printer_id="P1",
        agent_id="a1",
        kind="print",
        state=JobState.QUEUED,
        params=b"{}",
        copies=1,
        created_at=now,
        updated_at=now,
        deadline=now + 600,
    )
    fields.update(overrides)
    return JobRecord(**fields)


async def test_search_jobs_filters_and_pages_newest_first(store: Store) -> None:
    created: list[JobRecord] = []
    for i in range(30):
        record = job(
            branch_id=("b1", "b2", "b3")[i % 3],
            printer_id=("P1", "P2")[i % 2],
            kind=("print", "print", "test")[i % 3 - 1],
            state=(JobState.QUEUED, JobState.FAILED)[i % 2],
        )
        await store.create_job(record, "submitted", state_cause="test")
        created.append(record)
        await asyncio.sleep(0.001)  # ids rise with time
    newest_first = sorted(created, key=lambda j: j.id, reverse=True)

    pages, cursor = [], None
    while True:
        page = await search_jobs(store, branches=None, before=cursor, limit=7)
        pages.append([j.id for j in page])
        if len(page) < 7:
            break
        cursor = page[-1].id
    assert [i for p in pages for i in p] == [j.id for j in newest_first]

    found = await search_jobs(
        store, branches=["b1", "b2"], printer_id="P2", state=JobState.FAILED, limit=100
    )
    assert [j.id for j in found] == [
        j.id
        for j in newest_first
        if j.branch_id in ("b1", "b2") and j.printer_id == "P2" and j.state is JobState.FAILED
    ]
    assert found
    tests = await search_jobs(store, branches=None, kind="test", limit=100)
    assert {j.kind for j in tests} == {"test"} and len(tests) == 10
    assert await search_jobs(store, branches=[], limit=10) == []


# --- the event feed, on the real registry and hub ---------------------------------------------


async def test_feed_announces_jobs_agents_and_printers_to_whom_may_see_them() -> None:
    registry = Registry()
    announce(registry, "b1", "a1")
    announce(registry, "b2", "a2")
    hub = InFlight()
    feed = EventFeed(registry, scan_interval=0.05, queue_size=100)
    hub.listeners.append(feed.on_job)

    async def next_event(subscription: Any) -> FeedEvent:
        event = await subscription.next(5)
        assert isinstance(event, FeedEvent), event
        return event

    async with (
        feed.subscribe(lambda b: b == "b1") as mine,
        feed.subscribe(see_all, branch_id="b2") as other,
    ):
        hub.notify("x", job(branch_id="b2", state=JobState.PRINTED))
        hub.notify(
            "y",
            job(
                branch_id="b1",
                state=JobState.FAILED,
                error=b'{"code":"PAPER_OUT","message":"out","retryable":false}',
            ),
        )
        hub.notify("z", None)  # a wake-up without a record announces nothing
        got = await next_event(mine)
        assert (got.kind, got.branch_id, got.state) == ("job", "b1", "failed")
        assert got.error is not None and got.error.code == "PAPER_OUT"
        got = await next_event(other)
        assert (got.kind, got.branch_id, got.state) == ("job", "b2", "printed")

        announce(registry, "b1", "a1", printers={"POS-1": {"paper": "out"}})
        got = await next_event(mine)
        assert (got.kind, got.printer_id, got.state, got.problems) == (
            "printer",
            "POS-1",
            "down",
            ["paper_out"],
        )
        announce(registry, "b1", "a1", state="offline")
        kinds = {(e.kind, e.state) for e in [await next_event(mine), await next_event(mine)]}
        assert ("agent", "offline") in kinds
        assert await other.next(0.2) is False  # b2 saw nothing of b1
    assert feed._scanner is None  # nobody listens: no scanning


async def test_a_slow_listener_loses_events_and_is_told_never_blocks() -> None:
    registry = Registry()
    feed = EventFeed(registry, queue_size=5)
    async with feed.subscribe(see_all) as slow:
        for _ in range(20):
            feed.on_job(job())
        got = [await slow.next(1) for _ in range(6)]
        assert [e.kind for e in got if isinstance(e, FeedEvent)] == ["job"] * 5 + ["lagged"]
        await feed.aclose()
        assert await slow.next(1) is None  # the end reaches it


# --- over HTTP, against the real stack --------------------------------------------------------


def test_http_endpoints_stay_inside_the_keys_branches(
    stack: Stack, start_agent: AgentFactory
) -> None:
    mine = start_agent()
    theirs = start_agent()
    with stack.client(timeout=10) as admin:
        created = admin.post(
            "/v1/api-keys", json={"chain": unique_id("c"), "branches": [mine.branch_id]}
        )
        key = created.json()["key"]
    events: list[dict[str, Any]] = []
    ready = threading.Event()

    def listen() -> None:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.stream(
            "GET", f"{stack.api_url}/v1/events", headers=headers, timeout=30
        ) as stream:
            kind = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                    if kind == "ready":
                        ready.set()
                elif line.startswith("data: ") and kind == "job":
                    events.append(json.loads(line[6:]))
                    if events[-1]["state"] == "printed":
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(10)
    with (
        httpx.Client(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as http,
        stack.client(timeout=10) as admin,
    ):
        theirs_printed = admin.post(f"/v1/branches/{theirs.branch_id}/printers/POS-80C/test")
        assert theirs_printed.status_code == 200
        printed = http.post(f"/v1/branches/{mine.branch_id}/printers/POS-80C/test")
        assert printed.status_code == 200
        listener.join(10)
        assert not listener.is_alive()
        assert {e["branch_id"] for e in events} == {mine.branch_id}
        assert events[-1]["job_id"] == printed.json()["job_id"]

        found = http.get("/v1/jobs/search", params={"printer_id": "POS-80C"}).json()
        assert [j["id"] for j in found["jobs"]] == [printed.json()["job_id"]]
        assert http.get("/v1/jobs/search", params={"branch_id": theirs.branch_id}).json() == {
            "jobs": [],
            "next_cursor": None,
        }
        page = http.get("/v1/console/branches").json()
        assert [b["branch_id"] for b in page["branches"]] == [mine.branch_id]
        assert http.get(f"/v1/console/branches/{theirs.branch_id}").status_code == 404
        assert http.get(f"/v1/console/branches/{mine.branch_id}").json()["agents"][0]["online"]
        assert httpx.get(f"{stack.api_url}/v1/events", timeout=5).status_code == 401
        bad = http.get("/v1/jobs/search", params={"state": "lost"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_REQUEST"


@pytest.mark.parametrize("path", ["/v1/console/branches", "/v1/jobs/search", "/v1/events"])
def test_data_calls_need_a_key(stack: Stack, path: str) -> None:
    answer = httpx.get(f"{stack.api_url}{path}", timeout=5)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "UNAUTHORIZED"


def test_every_error_code_has_words_for_support() -> None:
    """The console says every typed error in words (``words.js``), not as a bare code."""
    words = (STATIC_DIR / "js" / "words.js").read_text()
    table = words[words.index("const ERRORS = {") : words.index("};")]
    said = set(re.findall(r"^\s+([A-Z_]+):", table, re.MULTILINE))
    assert {code.value for code in ErrorCode} <= said, {c.value for c in ErrorCode} - said
