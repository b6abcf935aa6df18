"""Chaos run of the print-job lifecycle: kill -9 the agents, the broker and the API, stall a
network printer, while print jobs with mixed deadlines and test prints from a retrying client
flow; then judge every job against the paper (:mod:`ops._chaos_audit`).

``python -m ops.chaos [--jobs 500] [--rate 50] [--agents 2] [--keep]`` starts its own stack
(Mosquitto, the API with its production settings, agents with virtual printers and one agent
with a fake network printer) in a temporary state directory, on loopback ports only. The test
suite calls :func:`run_chaos` (``tests/test_chaos.py``); docs/chaos.md explains the output.
Exit status 1 when any check fails.

The run is put together here from its parts: the settings (:mod:`ops._chaos_config`), the
faults and the timeline (:mod:`ops._chaos_faults`), the clients (:mod:`ops._chaos_clients`),
what is read back from the API and the paper (:mod:`ops._chaos_read`) and the judge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker import free_port
from ops import _chaos_read as read
from ops._chaos_audit import FINAL, ChaosReport, TestPrintAnswer, judge
from ops._chaos_clients import submit_all
from ops._chaos_config import DEFAULTS, NETWORK_PRINTER, PRINTER, ChaosConfig
from ops._chaos_faults import Timeline, inflict
from ops.fake_printer import FakePrinter
from printermaster.stack import Stack

__all__ = ["ChaosConfig", "ChaosReport", "main", "run_chaos"]

#: API settings the run overrides (none: the API runs with its production settings).
API_SETTINGS: dict[str, Any] = {}
POSTGRES_ADMIN_URL = os.environ.get(
    "PM_CHAOS_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


#: The full run: every default.
FULL_RUN = ChaosConfig()


def run_chaos(config: ChaosConfig = FULL_RUN, *, keep: bool = False) -> ChaosReport:
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

            tl = Timeline()
            tl.note(
                f"submitting {config.jobs} jobs at {config.rate:g}/s "
                f"and {config.test_prints} test prints"
            )
            chaos = threading.Thread(
                target=inflict, args=(stack, agents, printer, config, tl), name="chaos"
            )
            chaos.start()
            try:
                ids = asyncio.run(submit_all(stack, agents, config, tl, report, answers))
            finally:
                chaos.join()
            submitted = time.monotonic()
            report.submit_seconds = submitted - tl.start
            report.test_prints = len({a.index for a in answers})
            tl.note(f"last submission answered ({len(ids)} job ids)")

            job_ids = set(ids.values()) | {a.job_id for a in answers if a.job_id}
            # production settings: a job is resent after 10 s of silence, then 20 s, 40 s
            bound = config.expire_after + DEFAULTS.sent_grace + 70.0
            branches = {h.branch_id for h in agents}
            states = read.settle(stack, job_ids, branches, bound, first_final)
            report.settle_seconds = time.monotonic() - submitted
            settled = all(read.state(states, j) in FINAL for j in job_ids)
            tl.note("settled" if settled else "gave up")
            timelines = read.timelines(stack, job_ids)
            report.events = tl.events
        # the stack is stopped (agents finish their current job): nothing prints after this
        paper, started = read.paper(agents)
        report.paper_by_printer[PRINTER] = sum(paper.values())
        if printer is not None:
            more, more_started = read.network_paper(printer, ids)
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
