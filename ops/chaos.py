"""Chaos run of the print-job lifecycle: kill -9 the agents, the broker and the API, stall a
network printer, while print jobs with mixed deadlines and test prints from a retrying client
flow; then judge every job against the paper (:mod:`ops._chaos_audit`).

``python -m ops.chaos [--jobs 500] [--rate 50] [--agents 2] [--keep]`` starts its own stack
(Mosquitto, the API with its production settings, agents with virtual printers and one agent
with a fake network printer) in a temporary state directory, on loopback ports only. The test
suite calls :func:`run_chaos` (``tests/test_chaos.py``); docs/chaos.md explains the output.
Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import json
import os
import random
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from broker import free_port
from cloud_api import ApiSettings, MqttClientSettings
from ops._chaos_audit import FINAL, ChaosReport, TestPrintAnswer, judge
from ops.fake_printer import FakePrinter
from printermaster.stack import AgentHandle, Stack

__all__ = ["ChaosConfig", "ChaosReport", "main", "run_chaos"]

PRINTER = "POS-80C"
#: The network printer of the stalled-printer agent.
NETWORK_PRINTER = "KITCHEN"
#: Each print job's text carries its index, so paper on the network printer names its job.
_MARK = re.compile(rb"CHAOS-(\d+)-END")
#: Seconds a submission or a test print keeps trying while no API answers (or only with 5xx;
#: each outage lasts ``down_for``): then it counts as rejected / never answered, not a hang.
_NO_API_FOR = 60.0

#: The API runs with its production lifecycle settings (resend after 10 s, a sent job expires
#: 5 s past its deadline, an accepted job with no result is outcome_unknown 10 min past it):
#: nothing is tuned for the run.
_DEFAULTS = ApiSettings(api_token="-", mqtt=MqttClientSettings(username="-", password="-"))
API_SETTINGS: dict[str, Any] = {}


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int = 500
    #: Submissions per second (steady: the i-th job is submitted at i / rate s).
    rate: float = 50.0
    #: Agents with a virtual printer (they are the ones killed).
    agents: int = 2
    #: Seconds the virtual printer takes per job, so jobs are mid-print when something dies.
    print_delay: float = 0.02
    #: Most jobs' deadline (s): longer than any outage of the run (about 1-3 s each).
    expire_after: float = 30.0
    #: One job in ``short_every`` (drawn per job, the same in every run) has a short deadline
    #: instead: 5, 6, ... 10 s.
    short_every: int = 3
    #: Seconds a killed process stays down.
    down_for: float = 1.0
    #: One more agent whose network printer (a fake ESC/POS printer) hangs: it reads nothing,
    #: on open connections or new ones, for ``stall_for`` seconds, then recovers.
    stalled_printer: bool = True
    stall_for: float = 6.0
    #: How it hangs: ``stall`` (connections opened during the hang are never read, ever: the
    #: agent's status poll or write on one waits for its own timeout; connections opened after
    #: the hang are served), or ``pause`` (nothing is read on any connection, open or new,
    #: until it recovers; then everything is).
    stall_mode: str = "stall"
    #: An agent's process is paused (SIGSTOP) this long at the start: its socket stays open,
    #: requests reach it and wait; test prints to it are answered 504 (0: no pause).
    pause_for: float = 4.0
    #: Test prints by a client that retries what the answer says is retryable (same
    #: Idempotency-Key, at most 3 retries), spread over the run.
    test_prints: int = 50
    state_dir: Path | None = None
    #: API instances (processes). With 2 or more, the killed API is never restarted: a survivor
    #: adopts its jobs (its lease expires), and submissions and reads go to the live ones.
    apis: int = 1
    #: ``sqlite`` or ``postgresql`` (a database created for the run on ``PM_CHAOS_POSTGRES``).
    store: str = "sqlite"
    #: Brokers. With 2 or more, agents fail over to the next when the first is killed, and
    #: return to it once it is back.
    brokers: int = 1

    def deadline(self, i: int) -> float:
        if self.short_every and random.Random(i).random() < 1 / self.short_every:
            return 5.0 + i % 6
        return self.expire_after


class _Timeline:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.events: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def note(self, what: str) -> None:
        with self._lock:
            self.events.append((time.monotonic() - self.start, what))


def _chaos(
    stack: Stack,
    agents: list[AgentHandle],
    printer: FakePrinter | None,
    config: ChaosConfig,
    tl: _Timeline,
) -> None:
    """Kill -9 an agent, the broker, another agent, the API, spread over the submission window;
    each stays down ``down_for`` seconds; stall the network printer for ``stall_for`` s.
    Blocking: runs in a thread."""
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

    def pause(handle: AgentHandle) -> None:
        pid = handle.process.pid
        if pid is None:
            return
        tl.note(f"SIGSTOP agent {handle.agent_id} for {config.pause_for:g} s (pid {pid})")
        os.kill(pid, signal.SIGSTOP)
        time.sleep(config.pause_for)
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:  # killed meanwhile by the plan (a short run): restarted
            return
        tl.note(f"SIGCONT agent {handle.agent_id}")

    def stall() -> None:
        assert printer is not None
        tl.note(f"network printer hangs ({config.stall_mode}) for {config.stall_for:g} s")
        printer.behaviour = "stall" if config.stall_mode == "stall" else "pause"
        time.sleep(config.stall_for)
        printer.behaviour = "normal"
        tl.note("network printer recovered")

    plan: list[tuple[float, Callable[[], None]]] = [
        (0.15, functools.partial(agent, agents[0])),
        (0.35, broker),
        (0.55, functools.partial(agent, agents[1 % len(agents)])),
        (0.75, api),
    ]
    if config.pause_for:
        paused = agents[1 % config.agents]

        def pause_in_background() -> None:
            threading.Thread(target=pause, args=(paused,), name="pause").start()

        plan.append((0.02, pause_in_background))
    if printer is not None:
        plan.append((0.40, lambda: threading.Thread(target=stall, name="stall").start()))
    for fraction, action in sorted(plan, key=lambda step: step[0]):
        delay = tl.start + fraction * window - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        action()


async def _submit_all(
    stack: Stack,
    agents: list[AgentHandle],
    config: ChaosConfig,
    tl: _Timeline,
    report: ChaosReport,
    answers: list[TestPrintAnswer],
) -> dict[int, str]:
    """Submit ``config.jobs`` jobs at a steady rate; retry with the same Idempotency-Key on
    connection errors and 5xx until the API answers 200/202. Returns index -> job id. Test
    prints go out among them (:func:`_test_print`)."""
    run = secrets.token_hex(4)
    ids: dict[int, str] = {}
    virtual = [h for h in agents if PRINTER in h.printers]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {stack.api_token}"},
        timeout=10,
        limits=limits,
    ) as http:

        async def one(i: int) -> None:
            handle = agents[i % len(agents)]
            text = f"CHAOS-{i}-END"
            body = {
                "branch_id": handle.branch_id,
                "printer_id": handle.printers[0],
                "content": {"type": "document", "blocks": [{"type": "text", "text": text}]},
                "expire_after": config.deadline(i),
            }
            key = f"chaos-{run}-{i}"
            attempt = 0
            give_up = time.monotonic() + _NO_API_FOR
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
                if time.monotonic() > give_up:
                    what = response.status_code if response is not None else "no answer"
                    report.rejected[i] = f"{what} for {_NO_API_FOR:g} s"
                    return
                report.submit_retries += 1
                await asyncio.sleep(0.2)

        tasks = []
        every = max(1, config.jobs // config.test_prints) if config.test_prints else 0
        for i in range(config.jobs):
            delay = tl.start + i / config.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
            if every and i % every == 0 and i // every < config.test_prints:
                handle = virtual[(i // every) % len(virtual)]
                key = f"chaos-{run}-test-{i}"
                tasks.append(asyncio.create_task(_test_print(http, stack, handle, i, key, answers)))
        await asyncio.gather(*tasks)
    return ids


async def _test_print(
    http: httpx.AsyncClient,
    stack: Stack,
    handle: AgentHandle,
    index: int,
    key: str,
    answers: list[TestPrintAnswer],
) -> None:
    """A dashboard's test print that retries as the answer invites: an error body with
    ``retryable: true`` is retried with the same Idempotency-Key (at most 3 retries, 0.5 s
    apart), and so is a connection error (the API is down: until it answers, as the
    submissions do, for at most ``_NO_API_FOR`` s); anything else is the answer."""
    path = f"/v1/branches/{handle.branch_id}/printers/{PRINTER}/test"
    attempt = tries = 0
    give_up = time.monotonic() + _NO_API_FOR
    while attempt < 4:
        urls = _api_urls(stack)
        url = urls[(index + tries) % len(urls)]
        tries += 1
        try:
            response = await http.post(url + path, headers={"Idempotency-Key": key}, timeout=60)
        except httpx.TransportError:
            if time.monotonic() > give_up:
                answers.append(TestPrintAnswer(index, attempt, 0, "NO_ANSWER", None, None))
                return
            await asyncio.sleep(0.5)
            continue
        try:
            data = response.json()
        except ValueError:
            data = {}
        error = data.get("error") or {}
        job_id = data.get("job_id") or error.get("job_id")
        answers.append(
            TestPrintAnswer(
                index,
                attempt,
                response.status_code,
                error.get("code"),
                error.get("retryable"),
                job_id,
            )
        )
        if response.status_code == 200 or not error.get("retryable"):
            return
        attempt += 1
        await asyncio.sleep(0.5)


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
    stack: Stack, ids: set[str], branches: set[str], timeout: float, first_final: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Poll until every job is final or ``timeout`` passes; the jobs as last seen. The final
    state each job is first seen in goes to ``first_final`` (a final state must not change)."""
    deadline = time.monotonic() + timeout
    states: dict[str, dict[str, Any]] = {}
    while True:
        try:
            states = _job_states(stack, branches)
        except httpx.HTTPError:
            pass  # the API may still be coming back
        for job_id, job in states.items():
            if job["state"] in FINAL:
                first_final.setdefault(job_id, job["state"])
        if all(_state(states, job) in FINAL for job in ids) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def _timelines(stack: Stack, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    timelines: dict[str, list[dict[str, Any]]] = {}
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    with httpx.Client(base_url=_api_urls(stack)[0], headers=headers, timeout=10) as http:
        for job_id in ids:
            response = http.get(f"/v1/jobs/{job_id}")
            if response.status_code == 200:
                timelines[job_id] = response.json()["timeline"]
    return timelines


def _state(states: dict[str, dict[str, Any]], job_id: str) -> str:
    return str(states.get(job_id, {}).get("state", "missing"))


def _paper(
    agents: list[AgentHandle], print_delay: float
) -> tuple[collections.Counter[str], dict[str, float]]:
    """Job id -> times it reached a virtual printer (``.prn`` files and journal lines,
    whichever is more), and job id -> when its first print started (file time - delay)."""
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
            started = path.stat().st_mtime - print_delay
            written[job] = min(written.get(job, float("inf")), started)
        log = directory / "journal.log"
        if log.exists():
            journal.update(log.read_text().split())
    return files | journal, written  # the larger count of the two, per job


def _network_paper(
    printer: FakePrinter, ids: dict[int, str]
) -> tuple[collections.Counter[str], dict[str, float]]:
    """The same for the fake network printer: each job's marker in the bytes it read, and when
    the chunk that carried it arrived (one kept-alive connection carries many jobs)."""
    copies: collections.Counter[str] = collections.Counter()
    started: dict[str, float] = {}
    for conn in list(printer.connections):
        for match in _MARK.finditer(bytes(conn.data)):
            job = ids.get(int(match.group(1)), f"unknown-index-{match.group(1).decode()}")
            copies[job] += 1
            at = conn.arrived_at(match.start())
            if at is not None:
                started[job] = min(started.get(job, float("inf")), at)
    return copies, started


def run_chaos(config: ChaosConfig = ChaosConfig(), *, keep: bool = False) -> ChaosReport:
    """One chaos run; the report says what happened (``report.problems()`` is empty when every
    check passed). The state directory is removed unless ``keep`` or a check failed."""
    own_dir = config.state_dir is None
    state_dir = Path(config.state_dir or tempfile.mkdtemp(prefix="pm-chaos-"))
    report = ChaosReport(jobs=config.jobs, state_dir=str(state_dir))
    overrides = dict(API_SETTINGS)
    drop_database = _store_for_run(config, overrides)
    stack = Stack(
        state_dir,
        mqtt_port=free_port(),
        http_port=free_port(),
        api_overrides=overrides,
        tls=False,
        brokers=config.brokers,
    )
    printer = FakePrinter().start() if config.stalled_printer else None
    answers: list[TestPrintAnswer] = []
    first_final: dict[str, str] = {}
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
            if printer is not None:
                network = {
                    "kind": "network",
                    "name": NETWORK_PRINTER,
                    "host": "127.0.0.1",
                    "port": printer.port,
                }
                n = config.agents + 1
                agents.append(stack.add_agent(f"chaos-b{n}", f"a{n}", [network]))
            for handle in agents:
                stack.wait_agent(handle.branch_id, handle.agent_id)

            tl = _Timeline()
            tl.note(
                f"submitting {config.jobs} jobs at {config.rate:g}/s "
                f"and {config.test_prints} test prints"
            )
            chaos = threading.Thread(
                target=_chaos, args=(stack, agents, printer, config, tl), name="chaos"
            )
            chaos.start()
            try:
                ids = asyncio.run(_submit_all(stack, agents, config, tl, report, answers))
            finally:
                chaos.join()
            submitted = time.monotonic()
            report.submit_seconds = submitted - tl.start
            report.test_prints = len({a.index for a in answers})
            tl.note(f"last submission answered ({len(ids)} job ids)")

            job_ids = set(ids.values()) | {a.job_id for a in answers if a.job_id}
            # production settings: a job is resent after 10 s of silence, then 20 s, 40 s
            bound = config.expire_after + _DEFAULTS.sent_grace + 70.0
            branches = {h.branch_id for h in agents}
            states = _settle(stack, job_ids, branches, bound, first_final)
            report.settle_seconds = time.monotonic() - submitted
            settled = all(_state(states, j) in FINAL for j in job_ids)
            tl.note("settled" if settled else "gave up")
            timelines = _timelines(stack, job_ids)
            report.events = tl.events
        # the stack is stopped (agents finish their current job): nothing prints after this
        paper, started = _paper(agents, config.print_delay)
        report.paper_by_printer[PRINTER] = sum(paper.values())
        if printer is not None:
            more, more_started = _network_paper(printer, ids)
            report.paper_by_printer[NETWORK_PRINTER] = sum(more.values())
            paper.update(more)
            for job, at in more_started.items():
                started[job] = min(started.get(job, float("inf")), at)
        jobs = {j: states.get(j, {"state": "missing"}) for j in job_ids}
        judge(report, jobs, timelines, first_final, paper, started, answers)
    finally:
        drop_database()
        if printer is not None:
            printer.stop()
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
    parser.add_argument("--short-every", type=int, default=ChaosConfig.short_every)
    parser.add_argument("--test-prints", type=int, default=ChaosConfig.test_prints)
    parser.add_argument("--pause-for", type=float, default=ChaosConfig.pause_for)
    parser.add_argument("--stall-for", type=float, default=ChaosConfig.stall_for)
    parser.add_argument("--stall-mode", choices=("pause", "stall"), default=ChaosConfig.stall_mode)
    parser.add_argument(
        "--no-stalled-printer", action="store_true", help="no network printer that stalls"
    )
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
        short_every=args.short_every,
        test_prints=args.test_prints,
        stall_for=args.stall_for,
        stall_mode=args.stall_mode,
        pause_for=args.pause_for,
        stalled_printer=not args.no_stalled_printer,
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
