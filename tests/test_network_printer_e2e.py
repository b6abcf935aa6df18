"""A real agent process driving a (fake) ESC/POS network printer, seen through the API: the test
page reaches the printer, and the printer's own paper-out reaches the API and fails the job."""

from __future__ import annotations

import time

from ops.fake_printer import FakePrinter
from printermaster._stack import Stack

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
            started = time.monotonic()
            while True:
                (view,) = http.get(f"/v1/branches/{agent.branch_id}/printers").json()
                if view["state"]["paper"] == "out":
                    break
                assert time.monotonic() - started < 3.0, view
                time.sleep(0.05)
            assert view["ready"] is False
            refused = http.post(url)
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "PAPER_OUT"
            forced = http.post(url, params={"force": "true"})  # the agent asks the printer
            assert forced.status_code == 422 and forced.json()["error"]["code"] == "PAPER_OUT"
        assert len(fake_printer.jobs) == 1  # nothing was sent to a printer without paper
    finally:
        agent.process.stop()
