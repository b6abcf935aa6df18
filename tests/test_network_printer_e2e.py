"""A real agent process driving a (fake) ESC/POS network printer, seen through the API: the test
page reaches the printer, and the printer's own paper-out reaches the API and fails the job."""

from __future__ import annotations

import time
from typing import Any

from ops.fake_printer import FakePrinter
from printermaster.stack import AgentHandle, Stack

from ._mqtt import Cloud
from ._wait import eventually
from .conftest import unique_id


def test_network_printer_prints_and_reports_paper_out_through_the_api(
    stack: Stack, fake_printer: FakePrinter
) -> None:
    printer = {
        "kind": "network",
        "name": "KITCHEN",
        "host": "127.0.0.1",
        "port": fake_printer.port,
        "timeout": 2.0,
    }
    agent = stack.add_agent(unique_id("b"), unique_id("a"), [printer])
    try:
        stack.wait_agent(agent.branch_id, agent.agent_id)
        url = f"/v1/branches/{agent.branch_id}/printers/KITCHEN/test"
        with stack.client(timeout=15) as http:
            response = http.post(url)
            assert response.status_code == 200, response.text
            job_id = response.json()["job_id"]
            (page,) = fake_printer.wait_for_jobs(1)
            assert job_id.encode() in page and response.json()["result"]["bytes"] == len(page)

            fake_printer.state.paper = "out"  # the printer's own DLE EOT answer changes

            def paper_out() -> dict[str, Any] | None:
                (view,) = http.get(f"/v1/branches/{agent.branch_id}/printers").json()
                return view if view["state"]["paper"] == "out" else None

            view = eventually(paper_out, timeout=3.0, interval=0.05)
            assert view["ready"] is False
            refused = http.post(url)
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "PAPER_OUT"
            forced = http.post(url, params={"force": "true"})  # the agent asks the printer
            assert forced.status_code == 422 and forced.json()["error"]["code"] == "PAPER_OUT"
        assert len(fake_printer.jobs) == 1  # nothing was sent to a printer without paper
    finally:
        agent.process.stop()


def network_agent(stack: Stack, fake_printer: FakePrinter, **printer: object) -> AgentHandle:
    config = {
        "kind": "network",
        "name": "POS-80C",
        "host": "127.0.0.1",
        "port": fake_printer.port,
        **printer,
    }
    agent = stack.add_agent(unique_id("b"), unique_id("a"), [config])
    stack.wait_agent(agent.branch_id, agent.agent_id)
    return agent


def test_forced_test_print_to_a_hung_printer_answers_within_seconds(
    stack: Stack, fake_printer: FakePrinter
) -> None:
    """A printer that takes connections and never answers: a status poll is stuck on it when
    the forced test print comes. The job must not wait behind the poll, and its own status
    question is short: an answer in seconds (it was 504 after 30 s)."""
    agent = network_agent(stack, fake_printer, timeout=10.0)
    try:
        fake_printer.stall_for(60)
        url = f"/v1/branches/{agent.branch_id}/printers/POS-80C/test"
        with stack.client(timeout=40) as http:
            started = time.monotonic()
            forced = http.post(url, params={"force": "true"})
            took = time.monotonic() - started
        assert forced.status_code == 422, forced.text
        assert forced.json()["error"]["code"] == "PRINTER_OFFLINE"
        assert took < 10, f"answered after {took:.1f}s"
        print(f"\nforced test print to a hung printer: 422 PRINTER_OFFLINE after {took:.2f}s")
        assert fake_printer.jobs == []
    finally:
        agent.process.stop()


def test_jobs_due_before_a_stalled_printer_recovers_end_unprinted(
    stack: Stack, fake_printer: FakePrinter
) -> None:
    """The stalled printer of a chaos run: it stops answering for 5 s, then recovers. A test
    print and a print job due before that must end without printing, and nothing of them may
    reach the printer when it comes back."""
    agent = network_agent(stack, fake_printer, timeout=10.0)
    cloud = Cloud(stack, agent.branch_id)
    try:
        fake_printer.stall_for(5)
        time.sleep(0.5)  # a status poll is stuck on the printer now
        test_page = cloud.send(
            agent, "printer.test", {"printer": "POS-80C"}, deadline=time.time() + 2
        )
        ticket = cloud.print_job(agent, deadline=time.time() + 3)
        for job_id in (test_page, ticket):
            final = cloud.final(job_id, timeout=10)
            assert final["stage"] == "failed", final
            assert "printing" not in cloud.stages(job_id)
        assert cloud.final(ticket)["error"]["code"] == "EXPIRED"
        # it may have waited for the printer (PRINTER_OFFLINE) before its deadline came
        assert set(cloud.stages(ticket)) <= {"accepted", "waiting", "failed"}
        eventually(lambda: not fake_printer.stalled, timeout=10, interval=0.1)
        time.sleep(1.5)  # not eventually: a late write would land within this window
        assert fake_printer.jobs == []
    finally:
        cloud.close()
        agent.process.stop()
