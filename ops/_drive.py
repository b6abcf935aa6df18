"""The load driver shared by the system and the floor: closed loop (``concurrency`` workers, each
with one request in flight) or paced at a target rate, for a bounded time or request count."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: One request: ``call(k)`` sends request number ``k`` and returns None on success or a short
#: error label (HTTP status, error code, ``timeout``); exceptions count as errors by type name.
Call = Callable[[int], Awaitable[str | None]]


@dataclass
class PhaseResult:
    name: str
    concurrency: int
    target_rate: float | None
    #: Seconds of the measured window (after warm-up).
    window_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    #: CPU% per process over the measured window (100 = one core), when measured.
    cpu_percent: dict[str, float] | None = None

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def requests(self) -> int:
        return self.ok + sum(self.errors.values())

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms, dtype=float)
        pct = (
            {f"p{p}_ms": round(float(np.percentile(lat, p)), 3) for p in (50, 90, 95, 99, 99.9)}
            if lat.size
            else {}
        )
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "target_rate": self.target_rate,
            "window_s": round(self.window_s, 3),
            "requests": self.requests,
            "ok": self.ok,
            "errors": dict(self.errors),
            "success_rate": round(self.ok / self.requests, 6) if self.requests else 0.0,
            "throughput_per_s": round(self.ok / self.window_s, 1) if self.window_s else 0.0,
            **{k.replace(".", "_"): v for k, v in pct.items()},
            "mean_ms": round(float(lat.mean()), 3) if lat.size else None,
            "max_ms": round(float(lat.max()), 3) if lat.size else None,
            "cpu_percent": self.cpu_percent,
            # CPU time each process spent per successful request: steadier than latency on a
            # shared machine, and what a fix should move.
            "cpu_ms_per_request": {
                name: round(pct / 100 * 1000 / (self.ok / self.window_s), 3)
                for name, pct in self.cpu_percent.items()
                if name != "machine_cores"
            }
            if self.cpu_percent and self.ok
            else None,
        }


async def drive(
    name: str,
    calls: Sequence[Call],
    *,
    duration: float,
    warmup: float = 0.0,
    rate: float | None = None,
    max_requests: int | None = None,
    warmup_requests: int = 0,
    progress: Callable[[str], None] | None = print,
    request_timeout: float = 40.0,
) -> PhaseResult:
    """Run one worker per entry of ``calls`` until ``duration`` s have passed (or
    ``max_requests`` were sent). Requests that start during the first ``warmup`` s or are among
    the first ``warmup_requests`` are not recorded; throughput counts successes per second of the
    measured window. With ``rate``, request ``k`` starts no earlier than ``k / rate`` s in, so
    the workers together keep to the rate as long as ``concurrency`` suffices."""
    result = PhaseResult(name, len(calls), rate)
    counter = itertools.count()
    t0 = time.perf_counter()
    measure_from = t0 + warmup
    end = t0 + duration
    first_recorded: list[float] = []

    async def worker(call: Call) -> None:
        while True:
            k = next(counter)
            if max_requests is not None and k >= max_requests:
                return
            now = time.perf_counter()
            if rate:
                slot = t0 + k / rate
                if slot >= end:
                    return
                if slot > now:
                    await asyncio.sleep(slot - now)
            elif now >= end:
                return
            started = time.perf_counter()
            try:
                async with asyncio.timeout(request_timeout):
                    error = await call(k)
            except TimeoutError:
                error = "timeout"
            except Exception as exc:  # any failure of one request is a counted error
                error = type(exc).__name__
            took = time.perf_counter() - started
            if k < warmup_requests or started < measure_from:
                continue
            if not first_recorded:
                first_recorded.append(started)
            if error is None:
                result.latencies_ms.append(took * 1000)
            else:
                result.errors[error] += 1

    reporter = asyncio.create_task(_report(result, t0, progress)) if progress else None
    try:
        await asyncio.gather(*(worker(call) for call in calls))
    finally:
        if reporter is not None:
            reporter.cancel()
    stopped = time.perf_counter()
    if max_requests is not None:
        # Counted run: the window is from the first recorded request to the last reply.
        result.window_s = stopped - (first_recorded[0] if first_recorded else t0)
    else:
        result.window_s = max(1e-9, min(stopped, end) - measure_from)
    if progress:
        s = result.summary()
        progress(
            f"[{name}] done: {s['ok']} ok, {sum(result.errors.values())} errors, "
            f"{s['throughput_per_s']}/s, p50 {s.get('p50_ms')} ms, p99 {s.get('p99_ms')} ms"
        )
    return result


async def _report(result: PhaseResult, t0: float, progress: Callable[[str], None]) -> None:
    seen = 0
    while True:
        await asyncio.sleep(1.0)
        ok = result.ok
        recent = result.latencies_ms[seen:]
        p50 = f"{float(np.median(recent)):.2f} ms" if recent else "-"
        progress(
            f"[{result.name}] {time.perf_counter() - t0:5.1f}s  {ok} ok  "
            f"{sum(result.errors.values())} err  last 1s: {ok - seen}/s, p50 {p50}"
        )
        seen = ok
