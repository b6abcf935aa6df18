"""Chaos run of the print-job lifecycle: kill -9 the agents, the broker and the API while jobs flow,
then check that every job ended, none printed twice and what the API says matches the paper.

``python -m ops.chaos [--jobs 500] [--rate 50] [--agents 2] [--keep]`` starts its own stack
(Mosquitto, the API, agents with virtual printers) in a temporary state directory, on loopback
ports only. The test suite calls :func:`run_chaos` (``tests/test_chaos.py``); docs/chaos.md explains
the output. Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from broker import free_port
from printermaster._stack import AgentHandle, Stack

PRINTER = "POS-80C"
FINAL = frozenset({"printed", "failed", "expired", "cancelled", "outcome_unknown"})

#: The API's lifecycle settings for the run, chosen so every job ends in bounded time:
#: a ``sent`` job is published again after 2 s of silence (the broker may have died before
#: saving it), expires 2 s past its deadline if the agent never took it, and an ``accepted`` job
#: with no result is ``outcome_unknown`` 5 s past its deadline. The worst case to settle is
#: therefore the last submission + ``expire_after`` + 5 s (+ a sweep), never the 10 min default.
API_SETTINGS: dict[str, Any] = {
    "sweep_interval": 0.5,
    "resend_after": 2.0,
    "sent_grace": 2.0,
    "outcome_grace": 5.0,
}


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int = 500
    #: Submissions per second (steady: the i-th job is submitted at i / rate s).
    rate: float = 50.0
    agents: int = 2
    #: Seconds the virtual printer takes per job, so jobs are mid-print when something dies.
    print_delay: float = 0.02
    #: Each job's deadline (s). Longer than any outage of the run (about 1-3 s each), so a job
    #: should print, not expire; short enough that a job nobody can finish ends soon.
    expire_after: float = 30.0
    #: Seconds a killed process stays down.
    down_for: float = 1.0
    state_dir: Path | None = None
    #: API instances (processes). With 2 or more, the killed API is never restarted: a survivor
    #: adopts its jobs (its lease expires), and submissions and reads go to the live ones.
    apis: int = 1
    #: ``sqlite`` or ``postgresql`` (a database created for the run on ``PM_CHAOS_POSTGRES``).
    store: str = "sqlite"
    #: Brokers. With 2 or more, agents fail over to the next when the first is killed, and
    #: return to it once it is back.
    brokers: int = 1


@dataclass
class ChaosReport:
    jobs: int
    states: collections.Counter[str] = field(default_factory=collections.Counter)
    still_open: dict[str, str] = field(default_factory=dict)
    #: job id -> times it reached paper, for jobs on paper more than once
    printed_twice: dict[str, int] = field(default_factory=dict)
    #: on paper, but the API says otherwise: job id -> API state
    paper_not_reported: dict[str, str] = field(default_factory=dict)
    #: the API says printed, the printer has nothing
    printed_without_paper: list[str] = field(default_factory=list)
    #: paper for a job id nobody submitted
    stray_paper: list[str] = field(default_factory=list)
    #: job id -> seconds past its deadline the print started (file time - print delay)
    printed_late: dict[str, float] = field(default_factory=dict)
    #: submissions answered neither 200/202 nor 5xx: index -> status and body
    rejected: dict[int, str] = field(default_factory=dict)
    submit_retries: int = 0
    submit_seconds: float = 0.0
    settle_seconds: float = 0.0
    events: list[tuple[float, str]] = field(default_factory=list)
    state_dir: str = ""

    def problems(self) -> list[str]:
        found = []
        if self.rejected:
            found.append(f"{len(self.rejected)} submissions rejected")
        if self.still_open:
            found.append(f"{len(self.still_open)} jobs not final")
        if self.printed_twice:
            found.append(f"{len(self.printed_twice)} jobs printed twice")
        ended = sum(self.states[s] for s in ("printed", "failed", "expired", "outcome_unknown"))
        if ended != self.jobs:
            found.append(f"printed+failed+expired+outcome_unknown = {ended}, not {self.jobs}")
        if self.printed_without_paper:
            found.append(f"{len(self.printed_without_paper)} jobs reported printed have no paper")
        lies = {j: s for j, s in self.paper_not_reported.items() if s != "outcome_unknown"}
        if lies:
            found.append(f"{len(lies)} jobs on paper but reported {sorted(set(lies.values()))}")
        if self.stray_paper:
            found.append(f"{len(self.stray_paper)} printed jobs nobody submitted")
        if self.printed_late:
            found.append(f"{len(self.printed_late)} jobs started printing after their deadline")
        return found

    def render(self) -> str:
        s = self.states
        open_states = collections.Counter(self.still_open.values())
        lines = [
            f"jobs submitted        {self.jobs} in {self.submit_seconds:.1f} s "
            f"({self.submit_retries} retried submissions)",
            f"printed               {s['printed']}",
            f"failed                {s['failed']}",
            f"expired               {s['expired']}",
            f"outcome_unknown       {s['outcome_unknown']}",
            f"cancelled             {s['cancelled']}",
            f"still open            {len(self.still_open)} {dict(open_states) or ''}".rstrip(),
            f"printed twice         {len(self.printed_twice)}",
            f"paper, not 'printed'  {len(self.paper_not_reported)} "
            f"{dict(collections.Counter(self.paper_not_reported.values())) or ''}".rstrip(),
            f"'printed', no paper   {len(self.printed_without_paper)}",
            f"printed late          {len(self.printed_late)}",
            f"time to settle        {self.settle_seconds:.1f} s after the last submission",
            "timeline:",
            *(f"  {at:7.2f} s  {what}" for at, what in self.events),
        ]
        problems = self.problems()
        lines.append("result:               " + ("; ".join(problems) if problems else "OK"))
        return "\n".join(lines)


class _Timeline:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.events: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def note(self, what: str) -> None:
        with self._lock:
            self.events.append((time.monotonic() - self.start, what))


def _chaos(stack: Stack, agents: list[AgentHandle], config: ChaosConfig, tl: _Timeline) -> None:
    """Kill -9 an agent, the broker, another agent, the API, spread over the submission window;
    each stays down ``down_for`` seconds. Blocking: runs in a thread."""
    window = config.jobs / config.rate

    def agent(handle: AgentHandle) -> None:
        tl.note(f"kill -9 agent {handle.agent_id} (pid {handle.process.pid})")
        handle.process.kill()
        time.sleep(config.down_for)
        handle.process.start()
        tl.note(f"agent {handle.agent_id} started (pid {handle.process.pid})")

    def broker() -> None:
        tl.note(f"kill -9 broker {stack.broker.config.port} (pid {stack.broker.pid})")
        stack.broker.kill()
        time.sleep(config.down_for)
        stack.broker.start()
        tl.note(f"broker started with its persistence file (pid {stack.broker.pid})")

    def api() -> None:
        assert stack.api is not None
        tl.note(f"kill -9 API (pid {stack.api.pid})")
        stack.api.kill()
        if stack.apis:
            _note_adoption(stack, tl)
            return
        time.sleep(config.down_for)
        stack.start_api()
        tl.note(f"API ready again (pid {stack.api.pid})")

    plan: list[tuple[float, Callable[[], None]]] = [
        (0.15, functools.partial(agent, agents[0])),
        (0.35, broker),
        (0.55, functools.partial(agent, agents[1 % len(agents)])),
        (0.75, api),
    ]
    for fraction, action in plan:
        delay = tl.start + fraction * window - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        action()


async def _submit_all(
    stack: Stack, agents: list[AgentHandle], config: ChaosConfig, tl: _Timeline, report: ChaosReport
) -> dict[int, str]:
    """Submit ``config.jobs`` jobs at a steady rate; retry with the same Idempotency-Key on
    connection errors and 5xx until the API answers 200/202. Returns index -> job id."""
    run = secrets.token_hex(4)
    ids: dict[int, str] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {stack.api_token}"},
        timeout=10,
        limits=limits,
    ) as http:

        async def one(i: int) -> None:
            handle = agents[i % len(agents)]
            body = {
                "branch_id": handle.branch_id,
                "printer_id": PRINTER,
                "content": {"type": "document", "blocks": [{"type": "text", "text": f"#{i}"}]},
                "expire_after": config.expire_after,
            }
            key = f"chaos-{run}-{i}"
            attempt = 0
            while True:
                url = _api_urls(stack)[(i + attempt) % len(_api_urls(stack))]
                attempt += 1
                try:
                    response = await http.post(
                        f"{url}/v1/jobs", json=body, headers={"Idempotency-Key": key}
                    )
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code in (200, 202):
                    ids[i] = response.json()["id"]
                    return
                if response is not None and response.status_code < 500:
                    report.rejected[i] = f"{response.status_code} {response.text[:200]}"
                    return
                report.submit_retries += 1
                await asyncio.sleep(0.2)

        tasks = []
        for i in range(config.jobs):
            delay = tl.start + i / config.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return ids


def _job_states(stack: Stack, branches: set[str]) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    with httpx.Client(base_url=_api_urls(stack)[0], headers=headers, timeout=10) as http:
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


def _settle(
    stack: Stack, ids: set[str], branches: set[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Poll until every job is final or ``timeout`` passes; the jobs as last seen."""
    deadline = time.monotonic() + timeout
    states: dict[str, dict[str, Any]] = {}
    while True:
        try:
            states = _job_states(stack, branches)
        except httpx.HTTPError:
            pass  # the API may still be coming back
        if all(_state(states, job) in FINAL for job in ids) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def _state(states: dict[str, dict[str, Any]], job_id: str) -> str:
    return str(states.get(job_id, {}).get("state", "missing"))


def _paper(agents: list[AgentHandle]) -> tuple[collections.Counter[str], dict[str, float]]:
    """Job id -> times it reached paper (``.prn`` files and journal lines, whichever is more),
    and job id -> when its first file was written."""
    files: collections.Counter[str] = collections.Counter()
    journal: collections.Counter[str] = collections.Counter()
    written: dict[str, float] = {}
    for handle in agents:
        directory = handle.printer_dir(PRINTER)
        for path in directory.glob("*.prn"):
            job = path.name.split(".", 1)[0]
            files[job] += 1
            written[job] = min(written.get(job, float("inf")), path.stat().st_mtime)
        log = directory / "journal.log"
        if log.exists():
            journal.update(log.read_text().split())
    return files | journal, written  # the larger count of the two, per job


def run_chaos(config: ChaosConfig = ChaosConfig(), *, keep: bool = False) -> ChaosReport:
    """One chaos run; the report says what happened (``report.problems()`` is empty when every
    check passed). The state directory is removed unless ``keep`` or a check failed."""
    own_dir = config.state_dir is None
    state_dir = Path(config.state_dir or tempfile.mkdtemp(prefix="pm-chaos-"))
    report = ChaosReport(jobs=config.jobs, state_dir=str(state_dir))
    overrides = {**API_SETTINGS, "default_expire_after": config.expire_after}
    drop_database = _store_for_run(config, overrides)
    stack = Stack(
        state_dir,
        mqtt_port=free_port(),
        http_port=free_port(),
        api_overrides=overrides,
        tls=False,
        brokers=config.brokers,
    )
    try:
        with stack:
            stack.start_broker()
            stack.start_api()
            for n in range(2, config.apis + 1):
                stack.add_api(f"api-{n}")
            agents = []
            for n in range(config.agents):
                handle = stack.add_agent(f"chaos-b{n + 1}", f"a{n + 1}", [PRINTER], start=False)
                directory = handle.printer_dir(PRINTER)
                directory.mkdir(parents=True, exist_ok=True)
                (directory / "state.json").write_text(json.dumps({"delay_s": config.print_delay}))
                handle.process.start()
                agents.append(handle)
            for handle in agents:
                stack.wait_agent(handle.branch_id, handle.agent_id)

            tl = _Timeline()
            tl.note(f"submitting {config.jobs} jobs at {config.rate:g}/s")
            chaos = threading.Thread(target=_chaos, args=(stack, agents, config, tl), name="chaos")
            chaos.start()
            try:
                ids = asyncio.run(_submit_all(stack, agents, config, tl, report))
            finally:
                chaos.join()
            submitted = time.monotonic()
            report.submit_seconds = submitted - tl.start
            tl.note(f"last submission answered ({len(ids)} job ids)")

            bound = config.expire_after + API_SETTINGS["outcome_grace"] + 15.0
            branches = {h.branch_id for h in agents}
            states = _settle(stack, set(ids.values()), branches, bound)
            report.settle_seconds = time.monotonic() - submitted
            settled = all(_state(states, j) in FINAL for j in ids.values())
            tl.note("settled" if settled else "gave up")
            report.events = tl.events
        # the stack is stopped (agents finish their current job): nothing prints after this
        paper, written = _paper(agents)
        job_ids = set(ids.values())
        for job in job_ids:
            state = _state(states, job)
            if job in written and job in states:
                # the file is written once the print delay has passed; 0.1 s for clock and fs
                late = written[job] - config.print_delay - states[job]["deadline"]
                if late > 0.1:
                    report.printed_late[job] = late
            report.states[state] += 1
            if state not in FINAL:
                report.still_open[job] = state
            if paper[job] > 1:
                report.printed_twice[job] = paper[job]
            if paper[job] and state != "printed":
                report.paper_not_reported[job] = state
            if state == "printed" and not paper[job]:
                report.printed_without_paper.append(job)
        report.stray_paper = sorted(set(paper) - job_ids)
    finally:
        drop_database()
        if own_dir and not keep and not report.problems():
            shutil.rmtree(state_dir, ignore_errors=True)
    return report


# --- several API instances, PostgreSQL, several brokers ----------------------------------------

POSTGRES_ADMIN_URL = os.environ.get(
    "PM_CHAOS_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _api_urls(stack: Stack) -> list[str]:
    """The API instances that run (the first is killed for good when there are several)."""
    urls = [stack.api_url] if stack.api is not None and stack.api.running() else []
    urls += [extra.url for extra in stack.apis if extra.process.running()]
    return urls or [stack.api_url]


def _note_adoption(stack: Stack, tl: _Timeline, timeout: float = 30.0) -> None:
    """Wait (bounded) for a surviving instance to adopt the killed one; note it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for extra in stack.apis:
            log = extra.process.log_path.read_text(errors="replace")
            if "adopted instance api-1" in log:
                line = log[log.index("adopted instance api-1") :].splitlines()[0]
                tl.note(f"{extra.instance_id} {line}")
                return
        time.sleep(0.1)
    tl.note("no instance adopted api-1")


def _store_for_run(config: ChaosConfig, overrides: dict[str, Any]) -> Callable[[], None]:
    """With ``store = postgresql``: a database for the run, named in ``overrides``; returns
    what drops it again."""
    if config.store == "sqlite":
        return lambda: None
    if config.store != "postgresql":
        raise ValueError(f"store must be sqlite or postgresql, not {config.store!r}")
    import asyncpg

    name = f"pm_chaos_{secrets.token_hex(6)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    overrides["store_url"] = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    return lambda: asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.chaos", description=__doc__)
    parser.add_argument("--jobs", type=int, default=ChaosConfig.jobs)
    parser.add_argument("--rate", type=float, default=ChaosConfig.rate, help="jobs per second")
    parser.add_argument("--agents", type=int, default=ChaosConfig.agents)
    parser.add_argument("--print-delay", type=float, default=ChaosConfig.print_delay)
    parser.add_argument("--expire-after", type=float, default=ChaosConfig.expire_after)
    parser.add_argument("--down-for", type=float, default=ChaosConfig.down_for)
    parser.add_argument("--state-dir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    parser.add_argument(
        "--apis", type=int, default=1, help="API processes (2+: the killed one stays dead)"
    )
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--brokers", type=int, default=1, help="brokers agents fail over between")
    args = parser.parse_args(argv)
    config = ChaosConfig(
        jobs=args.jobs,
        rate=args.rate,
        agents=args.agents,
        print_delay=args.print_delay,
        expire_after=args.expire_after,
        down_for=args.down_for,
        state_dir=args.state_dir,
        apis=args.apis,
        store=args.store,
        brokers=args.brokers,
    )
    report = run_chaos(config, keep=args.keep)
    print(report.render())
    if report.problems() or args.keep:
        print(f"state directory: {report.state_dir}")
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
