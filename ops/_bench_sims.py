"""The benchmark's simulated branches: broker logins provisioned in batches, and the
``ops.sim_agents`` processes that run the agents (or the floor's bare responders) on them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker import Credentials, DynSecAdmin, agent_role, agent_username, new_password
from printermaster.stack import Stack, child_env

from .sim_agents import LEDGER_SYNC

PRINTER = "POS-80C"
AGENT_ID = "a1"


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


@dataclass(frozen=True)
class Branch:
    branch_id: str
    agent_id: str
    creds: Credentials

    def spec(self) -> dict[str, str]:
        return {
            "branch_id": self.branch_id,
            "agent_id": self.agent_id,
            "username": self.creds.username,
            "password": self.creds.password,
            "printer": PRINTER,
        }


# --- provisioning --------------------------------------------------------------------------


async def provision(stack: Stack, count: int, batch: int = 100) -> list[Branch]:
    """One broker login and role per simulated agent, ``batch`` agents per control message.

    Mosquitto 2.0's plugin rewrites its whole JSON file after every command, so provisioning is
    quadratic in the number of agents; one round trip per batch keeps 1,000 agents to seconds.
    """
    branches = [
        Branch(
            f"bench{i:05d}",
            AGENT_ID,
            Credentials(agent_username(f"bench{i:05d}", AGENT_ID), new_password()),
        )
        for i in range(count)
    ]
    admin = DynSecAdmin("127.0.0.1", stack.mqtt_port, stack.creds("admin"), timeout=60)
    async with admin:
        for start in range(0, count, batch):
            commands: list[dict[str, Any]] = []
            for b in branches[start : start + batch]:
                role = agent_role(b.branch_id, b.agent_id)
                acls = [acl.as_json() for acl in role.acls]
                commands.append({"command": "createRole", "rolename": role.name, "acls": acls})
                commands.append(
                    {
                        "command": "createClient",
                        "username": b.creds.username,
                        "password": b.creds.password,
                        "clientid": b.creds.username,  # bound to its id, as provisioned
                        "roles": [{"rolename": role.name}],
                    }
                )
            await admin.batch(commands)
    return branches


# --- simulated agents / responders ---------------------------------------------------------


class SimProcess:
    """One ``python -m ops.sim_agents`` child: READY on stdout once connected, STATS at exit."""

    def __init__(self, stack: Stack, mode: str, branches: Sequence[Branch], index: int) -> None:
        self.mode = mode
        self.dir = stack.state_dir / f"sim-{mode}-{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.spec_path = self.dir / "spec.json"
        spec = {
            "mode": mode,
            "host": "127.0.0.1",
            "port": stack.mqtt_port,
            "state_dir": str(self.dir),
            "agents": [b.spec() for b in branches],
        }
        fd = os.open(self.spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(spec, fh)
        self.log_path = self.dir / "sim.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.stats: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self, limit: float = 120.0) -> float:
        """Start and wait until every session is up; returns the seconds the sessions took."""
        err = await asyncio.to_thread(open, self.log_path, "ab")
        with err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ops.sim_agents",
                str(self.spec_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=child_env(),
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        async with asyncio.timeout(limit):
            while line := (await self.proc.stdout.readline()).decode():
                if line.startswith("READY"):
                    return float(line.split()[2])
        raise RuntimeError(f"sim {self.mode} exited before READY:\n{self._tail()}")

    async def stop(self) -> dict[str, Any]:
        if self.proc is None:
            return self.stats
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.stdout is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                while line := (await self.proc.stdout.readline()).decode():
                    if line.startswith("STATS "):
                        self.stats = json.loads(line[6:])
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        self.proc = None
        return self.stats

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        return ""


async def start_sims(
    stack: Stack, mode: str, branches: Sequence[Branch], procs: int
) -> list[SimProcess]:
    sims = [
        SimProcess(stack, mode, branches[i::procs], i) for i in range(min(procs, len(branches)))
    ]
    took = await asyncio.gather(*(sim.start() for sim in sims))
    log(f"{len(branches)} {mode} connected in {max(took):.1f} s ({len(sims)} process(es))")
    if mode == "agents":
        log(f"simulated agents: in-memory printers, job ledger with ledger_sync={LEDGER_SYNC!r}")
    return sims


async def stop_sims(sims: Sequence[SimProcess]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for stats in await asyncio.gather(*(sim.stop() for sim in sims)):
        for key, value in stats.items():
            totals[key] = totals.get(key, 0) + int(value)
    return totals
