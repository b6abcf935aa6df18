"""Benchmark: test prints over HTTP against the raw MQTT floor, on one machine.

``python -m ops.bench [options]`` (or ``make bench BENCH_ARGS=...``) starts its own Mosquitto,
provisions N agent logins through the dynamic-security plugin, then measures in one run:

1. the raw floor: a bare MQTT 5 requester (aiomqtt, QoS 1, Response Topic + Correlation Data)
   against N bare responders, at the load's concurrency, then sequentially;
2. the system: the API process and N real ``branch_agent.Agent`` instances (simulated branches in
   ``ops.sim_agents``), driven with ``POST /v1/branches/{b}/printers/{p}/test`` over HTTP
   keep-alive connections, at the same concurrency, then sequentially;
3. optionally (``--idle-footprint``) RSS and CPU of one real ``printermaster agent run`` process.

Results go to ``bench-results/<timestamp>/`` (``results.json``, ``latency.png``); see
docs/benchmark.md. All traffic is on 127.0.0.1 and bounded in count and time.

Here: the run and its phases. Provisioning and the simulation processes: ``_bench_sims``; the
HTTP side: ``_bench_http``; the floor's requester: ``_floor``; the load driver: ``_drive``;
results: ``_report``; CPU and idle footprint: ``_footprint``; py-spy: ``_profile``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from broker import free_port
from printermaster.stack import Stack

from ._bench_http import SystemCalls
from ._bench_sims import PRINTER, Branch, SimProcess, log, provision, start_sims, stop_sims
from ._drive import Call, PhaseResult, drive
from ._floor import FloorRequester
from ._footprint import CpuMeter, measure_idle
from ._profile import find_py_spy, record, summarise
from ._report import check_targets, ratios, text_summary, write_histogram, write_json
from .sim_agents import LEDGER_SYNC

__all__ = ["build_parser", "main", "run"]


# --- the run -------------------------------------------------------------------------------


async def _measure(
    name: str,
    calls: list[Call],
    args: argparse.Namespace,
    sequential: bool,
    cpu: CpuMeter | None = None,
) -> PhaseResult:
    if sequential:
        return await drive(
            f"{name} sequential",
            calls[:1],
            duration=args.single_timeout,
            max_requests=args.single + args.single_warmup,
            warmup_requests=args.single_warmup,
        )
    load = asyncio.create_task(
        drive(
            f"{name} load",
            calls,
            duration=args.warmup + args.duration,
            warmup=args.warmup,
            rate=args.rate,
        )
    )
    if cpu is not None:
        await asyncio.sleep(args.warmup)
        cpu.start()
    result = await load
    if cpu is not None:
        result.cpu_percent = cpu.stop()
    return result


async def run(args: argparse.Namespace, out_dir: Path, state_dir: Path) -> dict[str, Any]:
    report: dict[str, Any] = {
        "started_at": datetime.now().isoformat(timespec="seconds"),
        "config": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k not in {"out", "state_dir"}
        },
        # Simulated agents keep their job ledger without an fsync per commit (real agents: full).
        "sim_ledger_sync": LEDGER_SYNC,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
    results: dict[str, dict[str, PhaseResult]] = {"load": {}, "single": {}}
    stack = Stack(
        state_dir,
        mqtt_port=free_port(),
        http_port=free_port(),
        api_overrides={"workers": args.api_workers},
    )
    try:
        log(f"starting Mosquitto on 127.0.0.1:{stack.mqtt_port} (state in {state_dir})")
        await asyncio.to_thread(stack.start_broker)
        t = time.perf_counter()
        branches = await provision(stack, args.agents)
        report["provisioning_s"] = round(time.perf_counter() - t, 3)
        log(f"provisioned {args.agents} agent logins in {report['provisioning_s']:.2f} s")
        if args.only != "system":
            await _floor_phase(stack, args, branches, results, report)
        if args.only != "floor":
            await _system_phase(stack, args, branches, results, report, out_dir)
        if args.idle_footprint:
            report["idle_footprint"] = await _idle(stack, args.idle_seconds)
    finally:
        await asyncio.to_thread(stack.stop)

    for mode, phases in results.items():
        if not phases:
            continue
        section: dict[str, Any] = {name: r.summary() for name, r in phases.items()}
        if "system" in section and "floor" in section:
            section["ratios"] = ratios(section["system"], section["floor"])
        report[mode] = section
    report["targets"] = check_targets(report)
    report["full_size"] = args.agents >= 1000 and args.duration >= 30
    write_json(out_dir / "results.json", report)
    write_histogram(out_dir / "latency.png", results)
    return report


async def _floor_phase(
    stack: Stack,
    args: argparse.Namespace,
    branches: Sequence[Branch],
    results: dict[str, dict[str, PhaseResult]],
    report: dict[str, Any],
) -> None:
    """Bare responders on the agents' own logins and ACLs, a bare requester on the cloud's."""
    targets = [(b.branch_id, b.agent_id) for b in branches]
    sims = await start_sims(stack, "responders", branches, args.agent_procs)
    try:
        async with FloorRequester("127.0.0.1", stack.mqtt_port, stack.creds("cloud")) as floor:
            calls = floor.calls(targets, args.concurrency)
            if args.duration > 0:
                cpu = CpuMeter(_pids(stack, sims))
                results["load"]["floor"] = await _measure("floor", calls, args, False, cpu)
            if args.single > 0:
                results["single"]["floor"] = await _measure("floor", calls, args, True)
    finally:
        report["floor_responders"] = await stop_sims(sims)


async def _system_phase(
    stack: Stack,
    args: argparse.Namespace,
    branches: Sequence[Branch],
    results: dict[str, dict[str, PhaseResult]],
    report: dict[str, Any],
    out_dir: Path,
) -> None:
    """The API process and simulated agents, driven over HTTP."""
    log(f"starting the API on 127.0.0.1:{stack.http_port}")
    await asyncio.to_thread(stack.start_api)
    sims = await start_sims(stack, "agents", branches, args.agent_procs)
    system = SystemCalls(stack, branches)
    agents: dict[str, int] = {}
    try:
        pids = _pids(stack, sims)
        log(f"pids: {pids}")
        await system.warm(min(args.concurrency, 32))
        log(f"every agent answered a warm-up test print ({len(branches)})")
        calls = system.calls(args.concurrency)
        if args.duration > 0:
            measure = _measure("system", calls, args, False, CpuMeter(pids))
            if args.profile:
                profiled = {k: v for k, v in pids.items() if k.startswith(("api", "sim"))}
                results["load"]["system"], report["profile"] = await asyncio.gather(
                    measure, _profile(profiled, args.warmup + args.duration, out_dir)
                )
            else:
                results["load"]["system"] = await measure
        if args.single > 0:
            results["single"]["system"] = await _measure("system", calls, args, True)
    finally:
        system.close()
        agents = await stop_sims(sims)
    # Writer threads of the simulated agents' ledgers, over all sim processes (one each: shared).
    report["sim_ledger_threads"] = agents.get("ledger_threads", 0)
    report["integrity"] = {
        "http_printed": system.printed,
        "agents_printed": agents.get("printed", 0),
        "match": system.printed == agents.get("printed", 0),
    }
    printed = agents.get("printed", 0)
    report["wire"] = {
        "replies_published": agents.get("replies_published", 0),
        "replies_folded": agents.get("replies_folded", 0),
        # Warm-up included: every test print the agents answered, over the whole run.
        "replies_per_print": round(agents.get("replies_published", 0) / printed, 3)
        if printed
        else None,
    }


def _pids(stack: Stack, sims: Sequence[SimProcess]) -> dict[str, int | None]:
    pids = {"bench": os.getpid(), "broker": stack.broker.pid}
    if stack.api is not None and stack.api.pid is not None:
        workers = psutil.Process(stack.api.pid).children()
        if workers:  # a supervisor (idle) and its workers: measure the workers
            pids.update({f"api{i}": w.pid for i, w in enumerate(workers, 1)})
        else:
            pids["api"] = stack.api.pid
    pids.update({f"sim{i}": sim.pid for i, sim in enumerate(sims)})
    return pids


async def _profile(pids: dict[str, int | None], seconds: float, out_dir: Path) -> dict[str, Any]:
    """py-spy on every process of the system while the load runs (see ops/_profile.py)."""
    paths = {name: out_dir / f"profile-{name}.txt" for name in pids}
    await asyncio.gather(
        *(record(pid, seconds, paths[name]) for name, pid in pids.items() if pid is not None)
    )
    log(f"profiles in {out_dir}/profile-*.txt")
    return {name: summarise(path) for name, path in paths.items()}


async def _idle(stack: Stack, seconds: float) -> dict[str, Any]:
    handle = await asyncio.to_thread(stack.add_agent, "benchidle", "idle1", [PRINTER])
    await asyncio.to_thread(stack.wait_agent, "benchidle", "idle1")
    await asyncio.sleep(1.0)  # let start-up settle (first status, imports done)
    assert handle.process.pid is not None
    log(f"measuring the idle agent (pid {handle.process.pid}) for {seconds:g} s")
    result = await measure_idle(handle.process.pid, seconds, progress=log)
    handle.process.stop()
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ops.bench", description=__doc__.split("\n")[0])
    p.add_argument("--agents", type=int, default=200, help="simulated agents (default 200)")
    p.add_argument("--agent-procs", type=int, default=1, help="processes they run in (1)")
    p.add_argument("--api-workers", type=int, default=1, help="API processes (1)")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight (64)")
    p.add_argument("--rate", type=float, default=None, help="target requests/s (closed loop)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per load (10)")
    p.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds first (1)")
    p.add_argument("--single", type=int, default=500, help="sequential requests (500, 0: skip)")
    p.add_argument("--single-warmup", type=int, default=20, help="unrecorded of those (20)")
    p.add_argument("--single-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    p.add_argument("--idle-footprint", action="store_true", help="measure one idle agent")
    p.add_argument("--idle-seconds", type=float, default=60.0, help="idle period (60)")
    p.add_argument(
        "--only", choices=["floor", "system"], default=None, help="measure one side only"
    )
    p.add_argument("--profile", action="store_true", help="py-spy the API and agents under load")
    p.add_argument("--out", type=Path, default=None, help="bench-results/<timestamp>/")
    p.add_argument("--state-dir", type=Path, default=None, help="keep broker/API state here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.agents < 1 or args.concurrency < 1:
        print("--agents and --concurrency must be at least 1", file=sys.stderr)
        return 2
    if args.profile:
        find_py_spy()  # fail before the run, not after it
    out_dir = args.out or Path("bench-results") / datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="pm-bench-"))
    try:
        report = asyncio.run(run(args, out_dir, state_dir))
    finally:
        if args.state_dir is None:
            shutil.rmtree(state_dir, ignore_errors=True)
    print(text_summary(report))
    log(f"results in {out_dir}/results.json and {out_dir}/latency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
