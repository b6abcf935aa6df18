"""Liveness and readiness.

``/healthz`` says the process serves HTTP. ``/readyz`` runs a list of named checks at once, each
under a short deadline, and is 200 only when every one passes. A dependency joins with one line
in ``create_app``::

    readiness.add("store", store.ping)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
from litestar import Response, get
from litestar.datastructures import State

from protocol import software_version

#: A check answers ``(ok, detail)``; raising or overrunning its deadline counts as failing.
Check = Callable[[], Awaitable[tuple[bool, str]]]


class Health(msgspec.Struct, kw_only=True, frozen=True):
    status: str
    version: str
    #: The API instance that answered (``{instance_id}.{k}`` for worker *k*).
    instance_id: str


class CheckResult(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    ok: bool
    detail: str
    duration_ms: float


class ReadinessReport(msgspec.Struct, kw_only=True, frozen=True):
    status: str
    version: str
    checks: list[CheckResult]


class Readiness:
    """The named checks behind ``/readyz``."""

    def __init__(self, timeout: float = 1.0) -> None:
        self.timeout = timeout
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def _run(self, name: str, check: Check) -> CheckResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                ok, detail = await check()
        except TimeoutError:
            ok, detail = False, f"no answer within {self.timeout:g} s"
        except Exception as exc:  # a failing dependency is a result, not a 500
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        return CheckResult(
            name=name,
            ok=ok,
            detail=detail,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    async def report(self) -> ReadinessReport:
        results = await asyncio.gather(*(self._run(n, c) for n, c in self._checks.items()))
        ready = all(r.ok for r in results)
        return ReadinessReport(
            status="ready" if ready else "not ready",
            version=software_version(),
            checks=list(results),
        )


@get("/healthz", summary="Liveness: the process serves HTTP", tags=["health"])
async def healthz(state: State) -> Health:
    return Health(status="ok", version=software_version(), instance_id=state.settings.instance_id)


@get("/readyz", summary="Readiness: every named check passes (broker, ...)", tags=["health"])
async def readyz(readiness: Readiness) -> Response[ReadinessReport]:
    report = await readiness.report()
    return Response(report, status_code=200 if report.status == "ready" else 503)
