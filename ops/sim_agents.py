"""Many simulated branches in one process: ``python -m ops.sim_agents SPEC.json``.

``mode: "agents"`` runs one real :class:`branch_agent.Agent` per entry of the spec, all in one
asyncio loop, each with an in-memory printer that never sleeps (the agent's own code path, minus
the paper) and its own job ledger file with ``ledger_sync="normal"`` (no fsync per commit: a
simulation). The ledgers share one writer thread (a real agent has one of its own): hundreds of
writer threads in one process would spend the CPU on waking each other up.
``mode: "responders"`` runs bare MQTT responders on the same logins instead (the raw floor).
The process prints ``READY <n>`` once every session is up, serves until SIGTERM/SIGINT, then
prints ``STATS <json>`` (jobs printed / requests answered) and exits.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Final

from agent_config import VirtualPrinterConfig
from branch_agent import Agent, AgentConfig, MqttSettings, PrinterBackend, PrinterReading
from broker import Credentials
from groupcommit import Writer

from ._floor import run_responder

log = logging.getLogger("ops.sim_agents")

#: Sessions opened at once; the next wave starts when these are up.
WAVE = 100
#: The simulated agents' ledger durability (real agents default to ``"full"``).
LEDGER_SYNC: Final = "normal"


class MemoryPrinter(PrinterBackend):
    """A printer that is always ready and prints instantly: it counts jobs and bytes."""

    kind = "virtual"
    blocking = False  # counts in memory: no worker-thread hop per job

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.jobs = 0
        self.bytes = 0

    def write(self, data: bytes, job_id: str) -> None:
        self.jobs += 1
        self.bytes += len(data)

    def status(self) -> PrinterReading:
        return PrinterReading(online=True, paper="ok", cover_open=False)


def _agent(
    spec: dict[str, Any], entry: dict[str, Any], writer: Writer
) -> tuple[Agent, MemoryPrinter]:
    config = AgentConfig(
        branch_id=entry["branch_id"],
        agent_id=entry["agent_id"],
        data_dir=str(Path(spec["state_dir"]) / f"{entry['branch_id']}.{entry['agent_id']}"),
        mqtt=MqttSettings(
            host=spec["host"],
            port=spec["port"],
            username=entry["username"],
            password=entry["password"],
        ),
        printers=[VirtualPrinterConfig(name=entry["printer"])],
        heartbeat_interval=spec.get("heartbeat_interval", 30.0),
        # The memory printer never changes state: polling it would only load the loop.
        status_poll_interval=3600.0,
        # A simulation: the ledger survives a crash of this process, not of the machine (no fsync
        # per commit). Real agents default to "full".
        ledger_sync=LEDGER_SYNC,
    )
    agent = Agent(config, ledger_writer=writer)
    printer = MemoryPrinter(entry["printer"])
    agent.printers[entry["printer"]].backend = printer
    return agent, printer


async def _run_agents(spec: dict[str, Any], stop: asyncio.Event) -> dict[str, Any]:
    async with Writer(name="ledger") as writer:
        return await _serve_agents(spec, stop, writer)


async def _serve_agents(
    spec: dict[str, Any], stop: asyncio.Event, writer: Writer
) -> dict[str, Any]:
    agents: list[Agent] = []
    printers: list[MemoryPrinter] = []
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    for i in range(0, len(spec["agents"]), WAVE):
        wave = [_agent(spec, entry, writer) for entry in spec["agents"][i : i + WAVE]]
        for agent, printer in wave:
            agents.append(agent)
            printers.append(printer)
            tasks.append(asyncio.create_task(agent.run(), name=f"agent:{agent.branch_id}"))
        async with asyncio.timeout(60):
            await asyncio.gather(*(agent.connected.wait() for agent, _ in wave))
    # 200-1,000 agents' sessions, clients and tasks are long-lived objects a real agent process
    # holds once: keep the garbage collector's full passes from walking them again and again.
    gc.freeze()
    print(f"READY {len(agents)} {time.perf_counter() - started:.3f}", flush=True)
    ledger_threads = sum(t.name == "ledger" for t in threading.enumerate())
    await stop.wait()
    for agent in agents:
        agent.stop()
    await asyncio.wait(tasks, timeout=20)
    return {
        "agents": len(agents),
        "printed": sum(p.jobs for p in printers),
        "bytes": sum(p.bytes for p in printers),
        # Replies on the wire, and progress replies their job's final replaced before they left.
        "replies_published": sum(agent.outbox.published for agent in agents),
        "replies_folded": sum(agent.outbox.folded for agent in agents),
        "ledger_threads": ledger_threads,
    }


async def _run_responders(spec: dict[str, Any], stop: asyncio.Event) -> dict[str, Any]:
    answered = 0

    def count() -> None:
        nonlocal answered
        answered += 1

    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    for i in range(0, len(spec["agents"]), WAVE):
        events = []
        for entry in spec["agents"][i : i + WAVE]:
            ready = asyncio.Event()
            events.append(ready)
            creds = Credentials(entry["username"], entry["password"])
            coro = run_responder(
                spec["host"],
                spec["port"],
                creds,
                entry["branch_id"],
                entry["agent_id"],
                ready,
                count,
            )
            tasks.append(asyncio.create_task(coro))
        async with asyncio.timeout(60):
            await asyncio.gather(*(e.wait() for e in events))
    print(f"READY {len(tasks)} {time.perf_counter() - started:.3f}", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"agents": len(tasks), "answered": answered}


async def main_async(spec: dict[str, Any]) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if spec["mode"] == "agents":
        return await _run_agents(spec, stop)
    return await _run_responders(spec, stop)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ops.sim_agents SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    logging.basicConfig(
        level=spec.get("log_level", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # Windows
        runner = asyncio.run  # type: ignore[assignment]
    stats = runner(main_async(spec))
    print("STATS " + json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
