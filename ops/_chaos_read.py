"""What a chaos run (:mod:`ops.chaos`) reads back for its judge: every job as the API tells it,
and the paper, on the virtual printers and on the fake network printer."""

from __future__ import annotations

import collections
import re
import time
from typing import Any

import httpx

from ops._chaos_audit import FINAL
from ops._chaos_clients import api_urls
from ops._chaos_config import PRINTER
from ops.fake_printer import FakePrinter
from printermaster.stack import AgentHandle, Stack

__all__ = ["job_states", "network_paper", "paper", "settle", "state", "timelines"]

#: Each print job's text carries its index, so paper on the network printer names its job.
MARK = re.compile(rb"CHAOS-(\d+)-END")


def job_states(stack: Stack, branches: set[str]) -> dict[str, dict[str, Any]]:
    """Every job of ``branches`` as the API lists it, by job id."""
    states: dict[str, dict[str, Any]] = {}
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    with httpx.Client(base_url=api_urls(stack)[0], headers=headers, timeout=10) as http:
        for branch in branches:
            after: str | None = None
            while True:
                params: dict[str, Any] = {"branch_id": branch, "limit": 500}
                if after:
                    params["after"] = after
                page = http.get("/v1/jobs", params=params)
                page.raise_for_status()
                data = page.json()
                states.update({job["id"]: job for job in data["jobs"]})
                after = data["next_after"]
                if after is None:
                    break
    return states


def settle(
    stack: Stack, ids: set[str], branches: set[str], timeout: float, first_final: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Poll until every job is final or ``timeout`` passes; the jobs as last seen. The final
    state each job is first seen in goes to ``first_final`` (a final state must not change)."""
    deadline = time.monotonic() + timeout
    states: dict[str, dict[str, Any]] = {}
    while True:
        try:
            states = job_states(stack, branches)
        except httpx.HTTPError:
            pass  # the API may still be coming back
        for job_id, job in states.items():
            if job["state"] in FINAL:
                first_final.setdefault(job_id, job["state"])
        if all(state(states, job) in FINAL for job in ids) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def timelines(stack: Stack, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Each job's timeline (its events), by job id."""
    found: dict[str, list[dict[str, Any]]] = {}
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    with httpx.Client(base_url=api_urls(stack)[0], headers=headers, timeout=10) as http:
        for job_id in ids:
            response = http.get(f"/v1/jobs/{job_id}")
            if response.status_code == 200:
                found[job_id] = response.json()["timeline"]
    return found


def state(states: dict[str, dict[str, Any]], job_id: str) -> str:
    """A job's state in ``states`` (``missing`` when the API does not list it)."""
    return str(states.get(job_id, {}).get("state", "missing"))


def paper(agents: list[AgentHandle]) -> tuple[collections.Counter[str], dict[str, float]]:
    """Job id -> times it reached a virtual printer (``.prn`` files and journal lines,
    whichever is more), and job id -> when its first print started: the file's time (the
    virtual printer writes it as printing starts, and names it when the print lands, however
    long that took: a print slowed or frozen mid-way started when it started)."""
    files: collections.Counter[str] = collections.Counter()
    journal: collections.Counter[str] = collections.Counter()
    written: dict[str, float] = {}
    for handle in agents:
        if PRINTER not in handle.printers:
            continue
        directory = handle.printer_dir(PRINTER)
        for path in directory.glob("*.prn"):
            job = path.name.split(".", 1)[0]
            files[job] += 1
            written[job] = min(written.get(job, float("inf")), path.stat().st_mtime)
        log = directory / "journal.log"
        if log.exists():
            journal.update(log.read_text().split())
    return files | journal, written  # the larger count of the two, per job


def network_paper(
    printer: FakePrinter, ids: dict[int, str]
) -> tuple[collections.Counter[str], dict[str, float]]:
    """The same for the fake network printer: each job's marker in the bytes it read, and when
    the chunk that carried it arrived (one kept-alive connection carries many jobs)."""
    copies: collections.Counter[str] = collections.Counter()
    started: dict[str, float] = {}
    for conn in list(printer.connections):
        for match in MARK.finditer(bytes(conn.data)):
            job = ids.get(int(match.group(1)), f"unknown-index-{match.group(1).decode()}")
            copies[job] += 1
            at = conn.arrived_at(match.start())
            if at is not None:
                started[job] = min(started.get(job, float("inf")), at)
    return copies, started
