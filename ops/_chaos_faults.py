"""The faults of a chaos run (:mod:`ops.chaos`) and its timeline: kill -9 the agents, the broker
and the API, pause an agent, stall the network printer, each at its moment of the run."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime

from ops._chaos_config import ChaosConfig
from ops.fake_printer import FakePrinter
from printermaster.stack import AgentHandle, Stack

__all__ = ["Timeline", "inflict", "note_adoption", "note_failover"]


class Timeline:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.events: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def note(self, what: str) -> None:
        with self._lock:
            self.events.append((time.monotonic() - self.start, what))


def inflict(
    stack: Stack,
    agents: list[AgentHandle],
    printer: FakePrinter | None,
    config: ChaosConfig,
    tl: Timeline,
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
        killed = time.time()
        stack.broker.kill()
        if len(stack.brokers) > 1:
            threading.Thread(
                target=note_failover,
                args=(agents, stack.broker.config.port, killed, tl),
                name="failover",
            ).start()
        time.sleep(config.down_for)
        stack.broker.start()
        tl.note(f"broker started with its persistence file (pid {stack.broker.pid})")

    def api() -> None:
        assert stack.api is not None
        tl.note(f"kill -9 API (pid {stack.api.pid})")
        stack.api.kill()
        if stack.apis:
            note_adoption(stack, tl)
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


def note_adoption(stack: Stack, tl: Timeline, timeout: float = 30.0) -> None:
    """Wait (bounded) for a surviving instance to adopt the killed one; note it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for extra in stack.apis:
            log = extra.process.log_path.read_text(errors="replace")
            for line in log.splitlines():
                if "adopted instance api-1" not in line:
                    continue
                with contextlib.suppress(ValueError, AttributeError):  # a JSON line: its message
                    line = json.loads(line).get("msg", line)
                tl.note(f"{extra.instance_id} {line[line.index('adopted instance api-1') :]}")
                return
        time.sleep(0.1)
    tl.note("no instance adopted api-1")


def note_failover(
    agents: list[AgentHandle], killed_port: int, since: float, tl: Timeline, timeout: float = 15.0
) -> None:
    """With several brokers: note how long after the kill (wall clock ``since``) each agent was
    connected to another broker, from its log (bounded; a paused agent moves once resumed)."""
    moved: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(moved) < len(agents) and time.monotonic() < deadline:
        for handle in agents:
            if handle.agent_id not in moved:
                at = _connected_elsewhere(handle, killed_port, since)
                if at is not None:
                    moved[handle.agent_id] = at - since
        time.sleep(0.1)
    took = ", ".join(f"{agent} {seconds:.2f} s" for agent, seconds in sorted(moved.items()))
    missing = [h.agent_id for h in agents if h.agent_id not in moved]
    tl.note(
        f"broker failover: agents on another broker after {took or '-'}"
        + (f"; not within {timeout:g} s (not up then?): {', '.join(missing)}" if missing else "")
    )


def _connected_elsewhere(handle: AgentHandle, killed_port: int, since: float) -> float | None:
    """When (epoch s) the agent logged its first connection to a broker other than
    ``killed_port`` after ``since``; None if it has not yet."""
    try:
        lines = handle.process.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if '"connected to ' not in line:
            continue
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        if at >= since and not entry["msg"].startswith(f"connected to 127.0.0.1:{killed_port} "):
            return at
    return None
