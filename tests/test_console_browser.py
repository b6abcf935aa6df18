"""The console in a real browser (Debian's Chromium driven by Playwright) against a real
broker, API and agents: sign in with an API key, see the agent and printer online, test print
and watch the stages arrive, see paper-out in words, see an agent go offline. The same run
writes the screenshots in docs/ (console-*.png)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from playwright.sync_api import Page, expect

from printermaster.stack import AgentHandle, Stack

from .conftest import AgentFactory, unique_id
from .console_browser import DOCS, chromium

PAPER_OUT_WORDS = "The printer is out of paper. Load a new roll and try again."
#: The agents' status expiry in these stacks: 3 heartbeats of 30 s (a goodbye is faster).
PRESENCE_TIMEOUT_MS = 95_000


def api_key(stack: Stack, branches: list[str]) -> str:
    with stack.client(timeout=10) as http:
        answer = http.post(
            "/v1/api-keys",
            json={"chain": unique_id("chain-"), "branches": branches, "name": "console test"},
        )
        answer.raise_for_status()
        return str(answer.json()["key"])


def set_printer_state(handle: AgentHandle, printer: str, **state: object) -> None:
    (handle.printer_dir(printer) / "state.json").write_text(json.dumps(state))


@contextmanager
def open_page() -> Iterator[Page]:
    """A page in a fresh browser; fails on any JavaScript error. Opened after the agents are
    started: Playwright's sync API holds an event loop in this thread while it runs."""
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(  # a refusal by the Content-Security-Policy breaks a page silently
            "console",
            lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
        )
        yield page
        context.close()
        assert not errors, f"JavaScript errors: {errors}"


def sign_in(page: Page, stack: Stack, key: str) -> None:
    page.goto(f"{stack.api_url}/console")
    page.fill("#api-key", key)
    page.click("button[type=submit]")


@pytest.mark.timeout(300)  # the agent's way offline may take the whole presence timeout
def test_console_fleet_test_print_paper_out_and_offline(
    stack: Stack, start_agent: AgentFactory
) -> None:
    lyon = start_agent(("POS-80C",), branch_id=unique_id("lyon-"))
    nice = start_agent(("KITCHEN-1", "BAR-2"), branch_id=unique_id("nice-"))
    metz = start_agent(("POS-80C",), branch_id=unique_id("metz-"))
    set_printer_state(nice, "BAR-2", paper="near_end")
    metz.process.kill()  # no goodbye: the broker's Last Will after the keepalive says it
    stack.wait_agent(
        metz.branch_id, metz.agent_id, online=False, timeout=PRESENCE_TIMEOUT_MS / 1000
    )
    key = api_key(stack, [lyon.branch_id, nice.branch_id, metz.branch_id])
    with open_page() as page:
        walk_through(page, stack, key, lyon, nice, metz)


def walk_through(
    page: Page, stack: Stack, key: str, lyon: AgentHandle, nice: AgentHandle, metz: AgentHandle
) -> None:

    # --- a wrong key is refused in words, the right one opens the console
    sign_in(page, stack, key[:-2])
    expect(page.locator(".login .box.error")).to_have_text(
        "This API key is not valid, or it was revoked."
    )
    page.fill("#api-key", key)
    page.click("button[type=submit]")

    # --- fleet: the agent and its printer online, the others with their reasons in words
    card = page.locator(f"article[data-branch='{lyon.branch_id}']")
    expect(card.locator(f"li[data-agent='{lyon.agent_id}']")).to_have_attribute(
        "data-state", "online"
    )
    expect(card.locator("li[data-agent]")).to_contain_text(re.compile(r"Online\s+since"))
    expect(card.locator("a[data-printer='POS-80C']")).to_contain_text("Ready")
    nice_card = page.locator(f"article[data-branch='{nice.branch_id}']")
    expect(nice_card.locator("a[data-printer='BAR-2']")).to_contain_text("Paper running low")
    metz_card = page.locator(f"article[data-branch='{metz.branch_id}']")
    expect(metz_card.locator("li[data-agent]")).to_have_attribute("data-state", "offline")
    expect(metz_card.locator("a[data-printer='POS-80C']")).to_contain_text(
        "Branch computer offline"
    )
    expect(page.locator(".tile").first).to_contain_text("3")
    page.screenshot(path=str(DOCS / "console-fleet.png"), full_page=True)

    # search on the server: one branch by a part of its id
    page.fill("#fleet-search", nice.branch_id[-6:])
    expect(page.locator("article[data-branch]")).to_have_count(1)
    expect(page.locator("article[data-branch]")).to_have_attribute("data-branch", nice.branch_id)
    page.fill("#fleet-search", "")
    expect(page.locator("article[data-branch]")).to_have_count(3)

    # --- printer page: test print, the stages arrive live, then "printed"
    card.locator("a[data-printer='POS-80C']").click()
    expect(page.locator("#printer-reason")).to_have_text("Ready to print")
    page.click("#test-print")
    for stage in ("queued", "sent", "accepted", "printing", "printed"):
        expect(page.locator(f".stages li[data-stage='{stage}']")).to_have_class("done")
    expect(page.locator(".outcome .box.ok")).to_contain_text("Printed.")
    # a stage passed without its own report (folded into the final) has no time
    texts = page.locator(".stages .stage-time").all_inner_texts()
    times = [float(t.rstrip(" ms")) for t in texts if t]
    assert times == sorted(times) and texts[-1], texts
    job_link = page.locator(".outcome a").get_attribute("href")
    assert job_link and job_link.startswith("#/job/")
    expect(page.locator(".joblist li")).to_have_count(1)
    page.screenshot(path=str(DOCS / "console-printer.png"), full_page=True)

    # --- paper out: the failure in words a support person understands
    set_printer_state(lyon, "POS-80C", paper="out")
    expect(page.locator("#printer-reason")).to_contain_text("Out of paper")
    page.click("#test-print")
    error = page.locator(".outcome .box.error")
    expect(error).to_have_attribute("data-code", "PAPER_OUT")
    expect(error).to_contain_text(PAPER_OUT_WORDS)
    expect(error).to_contain_text("nothing was sent to the printer")
    # sent anyway: the printer itself refuses, live, after the branch accepted the job
    page.check("#test-force")
    page.click("#test-print")
    expect(error).to_have_attribute("data-code", "PAPER_OUT")
    expect(error.locator("a")).to_have_text("job timeline")
    expect(page.locator(".stages li[data-stage='accepted']")).to_have_class("done")
    expect(page.locator(".stages li.bad")).to_have_count(1)
    page.screenshot(path=str(DOCS / "console-printer-paper-out.png"), full_page=True)
    page.uncheck("#test-force")

    # --- the job's timeline
    page.goto(f"{stack.api_url}/console{job_link}")
    timeline = page.locator(".timeline li")
    expect(timeline.last).to_have_attribute("data-state", "printed")
    states = timeline.evaluate_all("els => els.map(e => e.dataset.state)")
    # the fast test print was answered with ``done`` alone: its timeline has no progress events
    assert states == ["queued", "sent", "printed"]
    page.screenshot(path=str(DOCS / "console-job.png"), full_page=True)

    # --- job search finds it by printer and state
    page.goto(
        f"{stack.api_url}/console#/jobs?branch_id={lyon.branch_id}&printer_id=POS-80C&state=printed"
    )
    expect(page.locator("tr[data-job]")).to_have_count(1)
    page.goto(f"{stack.api_url}/console#/jobs?branch_id={lyon.branch_id}")
    expect(page.locator("tr[data-job]")).to_have_count(2)  # and the one refused by the printer
    expect(page.locator("tr[data-job]").first).to_contain_text(PAPER_OUT_WORDS)
    page.screenshot(path=str(DOCS / "console-jobs.png"), full_page=True)

    # --- live feed, then stop the agent: offline in the feed and on the fleet page
    page.goto(f"{stack.api_url}/console#/feed")
    expect(page.locator("#feed-status")).to_have_text("Live")
    set_printer_state(lyon, "POS-80C", paper="ok")
    # paper again: it prints (a warning remains: its last job failed)
    back = page.locator(".feed-row[data-kind='printer']:not([data-state='down'])")
    expect(back.first).to_contain_text("POS-80C")
    with httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}) as http:
        printed = http.post(f"/v1/branches/{lyon.branch_id}/printers/POS-80C/test", timeout=10)
        assert printed.status_code == 200, printed.text
    job_rows = page.locator(
        f".feed-row[data-kind='job']:has(a[href='#/job/{printed.json()['job_id']}'])"
    )
    expect(job_rows.first).to_have_attribute("data-state", "printed")
    lyon.process.stop()
    offline = page.locator(".feed-row[data-kind='agent'][data-state='offline']")
    expect(offline).to_contain_text(lyon.agent_id, timeout=PRESENCE_TIMEOUT_MS)
    page.screenshot(path=str(DOCS / "console-feed.png"), full_page=True)
    page.goto(f"{stack.api_url}/console#/")
    expect(card.locator(f"li[data-agent='{lyon.agent_id}']")).to_have_attribute(
        "data-state", "offline", timeout=PRESENCE_TIMEOUT_MS
    )

    # --- a phone screen: one column, nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(card).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a phone screen"
    page.screenshot(path=str(DOCS / "console-phone.png"), full_page=False)
    page.goto(f"{stack.api_url}/console{job_link}")
    expect(timeline.last).to_have_attribute("data-state", "printed")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the job page is {overflow} px wider than a phone screen"
    page.screenshot(path=str(DOCS / "console-phone-job.png"), full_page=False)
    page.goto(f"{stack.api_url}/console#/printer/{lyon.branch_id}/POS-80C")
    page.click("#test-print")
    expect(page.locator(".outcome .box.error")).to_have_attribute("data-code", "AGENT_OFFLINE")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the printer page is {overflow} px wider than a phone screen"
    page.screenshot(path=str(DOCS / "console-phone-printer.png"), full_page=True)
