"""The console's fleet page over a fleet of real agents (a swarm in one process, each agent in
its own branch): server-side paging, search and the problems filter in the browser. 60
branches in the default run; 1,000 with ``--run-slow``, which also writes
docs/console-fleet-1000.png."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
from playwright.sync_api import expect

from branch_agent import Agent, AgentConfig
from printermaster._swarm import Swarm
from printermaster.stack import Stack

from ._wait import eventually
from .conftest import make_stack, unique_id
from .console_browser import DOCS, chromium
from .test_console_browser import api_key

PAGE = 24
#: The range in "Branches 1\u201324 of 60" is an en dash.
DASH = "\u2013"


@contextmanager
def swarm_running(stack: Stack, ids: list[tuple[str, str]], paper_out: set[int]) -> Iterator[None]:
    """The swarm in a thread of its own (Playwright's sync API holds this thread's loop)."""
    ready = threading.Event()
    failed: list[BaseException] = []
    stop = threading.Event()

    async def main() -> None:
        swarm = Swarm(stack, ids, printers=("POS-80C", "KITCHEN"))
        # 50 agents per control message: the broker acknowledges a message once it has run its
        # commands (rewriting its security file after each), and 500 outlast the admin
        # client's wait on a busy machine.
        creds = [
            c
            for at in range(0, len(ids), 50)
            for c in await stack.provision_agents(ids[at : at + 50])
        ]
        for key, cred in zip(ids, creds, strict=True):
            raw = stack.agent_config(*key, cred, list(swarm.printers), **swarm.config)
            swarm.agents[key] = Agent(msgspec.convert(raw, AgentConfig))
        for i in paper_out:
            agent = swarm.agents[ids[i]]
            directory = agent.printers["POS-80C"].backend.directory  # type: ignore[attr-defined]
            (directory / "state.json").write_text('{"paper": "out"}')
        try:
            async with asyncio.timeout(120):
                await swarm.start()
            ready.set()
            await asyncio.to_thread(stop.wait)
        finally:
            await swarm.stop()

    def run() -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            failed.append(exc)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="swarm", daemon=True)
    thread.start()
    try:
        assert ready.wait(150), "the swarm did not come online"
        assert not failed, failed
        yield
    finally:
        stop.set()
        thread.join(60)


def walk_the_fleet(stack: Stack, n: int, screenshot: bool) -> None:
    prefix = unique_id("shop")
    ids = [(f"{prefix}-{i:04d}", f"pos-{i:04d}") for i in range(n)]
    paper_out = {i for i in range(n) if i % 10 == 3}
    with swarm_running(stack, ids, paper_out):
        key = api_key(stack, [b for b, _ in ids])
        headers = {"Authorization": f"Bearer {key}"}

        def every_status_reached_the_api() -> bool:
            page = httpx.get(
                f"{stack.api_url}/v1/console/branches",
                params={"problems_only": "true", "limit": 1},
                headers=headers,
                timeout=10,
            ).json()
            assert page["totals"]["agents_online"] == n, page["totals"]
            return bool(page["matched"] == len(paper_out))

        eventually(every_status_reached_the_api, timeout=60, interval=0.2)
        t0 = time.perf_counter()
        one = httpx.get(f"{stack.api_url}/v1/console/branches", headers=headers, timeout=10)
        print(
            f"\n{n} branches: one page of 25 in {(time.perf_counter() - t0) * 1000:.0f} ms "
            f"over HTTP, {len(one.content)} bytes"
        )

        with chromium() as browser:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page_ = context.new_page()
            page_.goto(f"{stack.api_url}/console")
            page_.fill("#api-key", key)
            page_.click("button[type=submit]")
            cards = page_.locator("article[data-branch]")
            expect(cards).to_have_count(PAGE)
            expect(page_.locator(".results > p")).to_have_text(f"Branches 1{DASH}{PAGE} of {n}")
            expect(cards.first).to_have_attribute("data-branch", ids[0][0])
            expect(page_.locator(".tile").first).to_contain_text(str(n))
            if screenshot:
                page_.screenshot(path=str(DOCS / "console-fleet-1000.png"), full_page=False)

            page_.get_by_role("button", name="Next →").click()
            expect(cards.first).to_have_attribute("data-branch", ids[PAGE][0])
            expect(page_.locator(".results > p")).to_have_text(
                f"Branches {PAGE + 1}{DASH}{2 * PAGE} of {n}"
            )
            page_.get_by_role("button", name="← Previous").click()
            expect(cards.first).to_have_attribute("data-branch", ids[0][0])

            wanted = ids[n - 7]
            page_.fill("#fleet-search", wanted[1])  # an agent id, typed
            expect(cards).to_have_count(1)
            expect(cards.first).to_have_attribute("data-branch", wanted[0])
            page_.fill("#fleet-search", "")
            page_.check("#fleet-problems")
            expect(page_.locator(".results > p")).to_have_text(
                re.compile(rf"Branches 1{DASH}{min(PAGE, len(paper_out))} of {len(paper_out)}$")
            )
            expect(cards.first.locator("a[data-printer='POS-80C']")).to_contain_text("Out of paper")
            context.close()


def test_console_fleet_pages_and_searches_60_branches(stack: Stack) -> None:
    walk_the_fleet(stack, 60, screenshot=False)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_console_fleet_pages_and_searches_1000_branches(tmp_path: Path) -> None:
    """On a stack of its own: provisioning 1,000 agents on the shared broker, whose dynamic
    security file the other tests have grown, takes longer than the admin client waits."""
    with make_stack(tmp_path / "stack") as stack:
        walk_the_fleet(stack, 1000, screenshot=True)
