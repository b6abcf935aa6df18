"""Idle footprint of one real agent process: resident memory and CPU over a quiet period."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import psutil


async def measure_idle(
    pid: int, seconds: float, *, progress: Callable[[str], None] | None = print
) -> dict[str, Any]:
    """Sample RSS once a second for ``seconds``; CPU% is CPU time over wall time (100 = one
    core), counted from the process's own user+system times so short spikes are not missed."""
    proc = psutil.Process(pid)
    start_cpu = _cpu_seconds(proc)
    start = time.monotonic()
    rss: list[int] = []
    while (elapsed := time.monotonic() - start) < seconds:
        rss.append(proc.memory_info().rss)
        if progress and len(rss) % 10 == 0:
            progress(f"[idle] {elapsed:4.0f}/{seconds:g} s, RSS {rss[-1] / 2**20:.1f} MB")
        await asyncio.sleep(min(1.0, seconds - elapsed))
    wall = time.monotonic() - start
    cpu = _cpu_seconds(proc) - start_cpu
    rss.append(proc.memory_info().rss)
    try:
        uss: int | None = proc.memory_full_info().uss
    except psutil.AccessDenied:
        uss = None
    return {
        "pid": pid,
        "seconds": round(wall, 1),
        "rss_max_mb": round(max(rss) / 2**20, 2),
        "rss_mean_mb": round(sum(rss) / len(rss) / 2**20, 2),
        "uss_mb": round(uss / 2**20, 2) if uss is not None else None,
        "cpu_seconds": round(cpu, 4),
        "cpu_percent": round(cpu / wall * 100, 4),
        "threads": proc.num_threads(),
    }


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


class CpuMeter:
    """CPU% (100 = one core) of named processes between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items() if pid is not None}
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {name: _cpu_seconds(p) for name, p in self._procs.items()}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        out = {}
        for name, proc in self._procs.items():
            try:
                out[name] = round((_cpu_seconds(proc) - self._start[name]) / wall * 100, 1)
            except psutil.NoSuchProcess:
                continue
        out["machine_cores"] = float(psutil.cpu_count() or 0)
        return out
