"""What the API tells its operators while it works: the access log, the job events, the trace
context, and the counters and histograms behind ``/metrics`` (:mod:`._metrics`).

* :func:`access_logged` wraps the ASGI app: each HTTP request gets its trace (the incoming
  ``traceparent`` header or a new one) as the current trace id, and ends with one
  ``cloud_api.access`` event: method, route template, status, duration, principal, trace id.
* :class:`JobObserver` is told of every job creation and transition the job service applies:
  one ``cloud_api.jobs`` event each (job, branch, printer and agent ids, state, trace id),
  the stage histograms, and the outcome counters by error code. It also remembers the trace of
  each unfinished job, so a job sent later (its agent came back) carries its request's trace.
* :func:`instrument_store` times every store operation.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from pmlog import log_event
from protocol import (
    TRACEPARENT,
    current_trace_id,
    new_trace_id,
    parse_traceparent,
    reset_trace_id,
    set_trace_id,
    traceparent,
)

from .store import FINAL_STATES, JobRecord, JobState, Store

if TYPE_CHECKING:
    from ._metrics import Metrics

access_log = logging.getLogger("cloud_api.access")
jobs_log = logging.getLogger("cloud_api.jobs")

_HEADER: Final = TRACEPARENT.encode()
#: Routes polled by machines (load balancers, Prometheus): logged at DEBUG, not INFO.
_QUIET_ROUTES: Final = frozenset({"/healthz", "/readyz", "/metrics"})
TEST_PRINT_ROUTE: Final = "/v1/branches/{branch_id}/printers/{printer_id}/test"
#: Unfinished jobs whose trace and stage times are remembered at most (oldest forgotten first).
MAX_TRACKED: Final = 100_000

T = TypeVar("T")


def access_logged(app: ASGIApp, metrics: Metrics) -> ASGIApp:
    """``app`` with a trace per HTTP request, an access-log event and the HTTP metrics."""
    # labelled children looked up once per route (``labels()`` costs a lock and a dict each)
    children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def series(method: str, route: str, status: int) -> tuple[Any, Any, Any]:
        key = (method, route, status)
        found = children.get(key)
        if found is None:
            test_print = route == TEST_PRINT_ROUTE and method == "POST"
            found = children[key] = (
                metrics.http_seconds.labels(method, route),
                metrics.http_responses.labels(method, route, str(status)),
                metrics.test_print_seconds.labels(str(status)) if test_print else None,
            )
        return found

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                header = value.decode("latin-1")
                break
        trace_id = parse_traceparent(header) or new_trace_id()
        token = set_trace_id(trace_id)
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"]
            route = scope.get("path_template") or "unmatched"
            duration, responses, test_print = series(method, route, status)
            duration.observe(seconds)
            responses.inc()
            if test_print is not None:
                test_print.observe(seconds)
            level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
            if access_log.isEnabledFor(level):
                principal = scope.get("state", {}).get("principal")
                log_event(
                    access_log,
                    level,
                    f"{method} {scope['path']} {status} {seconds * 1000:.1f} ms",
                    {
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "principal": principal.name if principal is not None else None,
                        # the ids in the path (branch_id, printer_id, job_id, agent_id)
                        **scope.get("path_params", {}),
                        "trace_id": trace_id,
                    },
                )
            reset_trace_id(token)

    return observed


class _Code(msgspec.Struct):
    code: str = ""


_decode_code = msgspec.json.Decoder(_Code).decode


class JobObserver:
    """Job events, stage histograms and outcome counters, and the trace of unfinished jobs."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics
        #: job id -> its trace id, while unfinished
        self._traces: dict[str, str] = {}
        #: job id -> its current stage (sent, accepted) and the monotonic time it began, while
        #: unfinished
        self._since: dict[str, tuple[str, float]] = {}
        self._outcomes: dict[tuple[str, str], Any] = {}
        if metrics is not None:
            stage = metrics.stage_seconds
            self._stage = {s: stage.labels(s) for s in ("queued", "sent", "accepted")}

    def traceparent(self, job_id: str) -> str:
        """The ``traceparent`` to send a job with: its request's trace, else the current one."""
        trace_id = self._traces.get(job_id) or current_trace_id()
        if trace_id is None:
            trace_id = new_trace_id()
            self._remember(self._traces, job_id, trace_id)
        return traceparent(trace_id)

    def created(self, job: JobRecord) -> None:
        """A new job is stored (``queued``, or ``sent`` when its agent was online)."""
        trace_id = current_trace_id()
        if trace_id is not None:
            self._remember(self._traces, job.id, trace_id)
        if job.state is JobState.SENT:
            self._remember(self._since, job.id, ("sent", time.monotonic()))
        self._log(job, f"job {job.state.value}")

    def changed(self, job: JobRecord) -> None:
        """The job service applied a transition; ``job`` is the record it left."""
        to = job.state
        metrics = self._metrics
        now = time.monotonic()
        if metrics is not None:
            if to is JobState.SENT:
                self._stage["queued"].observe(max(0.0, time.time() - job.created_at))
            elif to is JobState.ACCEPTED or to is JobState.PRINTED:
                # A fast job goes from sent to printed: its agent folds ``accepted`` into the
                # final, so the time counts where the job was, ``sent``.
                began = self._since.get(job.id)
                if began is not None:
                    self._stage[began[0]].observe(now - began[1])
        if to is JobState.SENT or to is JobState.ACCEPTED:
            self._remember(self._since, job.id, (to.value, now))
        self._log(job, f"job {to.value}")
        if to in FINAL_STATES:
            self._since.pop(job.id, None)
            self._traces.pop(job.id, None)
            if metrics is not None:
                key = (to.value, self._code(job))
                counter = self._outcomes.get(key)
                if counter is None:
                    counter = self._outcomes[key] = metrics.outcomes.labels(*key)
                counter.inc()

    @staticmethod
    def _code(job: JobRecord) -> str:
        if job.error is None:
            return ""
        try:
            return _decode_code(job.error).code
        except msgspec.DecodeError:
            return ""

    def _log(self, job: JobRecord, message: str) -> None:
        if not jobs_log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "job_id": job.id,
            "branch_id": job.branch_id,
            "printer_id": job.printer_id,
            "agent_id": job.agent_id,
            "kind": job.kind,
            "state": job.state.value,
            "trace_id": current_trace_id() or self._traces.get(job.id),
        }
        if job.error is not None:
            fields["code"] = self._code(job)
        log_event(jobs_log, logging.INFO, message, fields)

    @staticmethod
    def _remember(table: dict[str, T], job_id: str, value: T) -> None:
        table[job_id] = value
        if len(table) > MAX_TRACKED:  # jobs finished elsewhere (another instance) age out
            del table[next(iter(table))]


def instrument_store(store: Store, metrics: Metrics) -> Store:
    """Time each public coroutine method of ``store`` into the store histogram (in place)."""
    for name, _ in inspect.getmembers(type(store), inspect.iscoroutinefunction):
        if name.startswith("_") or name in ("close", "open"):
            continue
        setattr(store, name, _timed(getattr(store, name), metrics.store_seconds.labels(name)))
    return store


def _timed(call: Callable[..., Awaitable[T]], histogram: Any) -> Callable[..., Awaitable[T]]:
    observe = histogram.observe

    @functools.wraps(call)
    async def timed(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        finally:
            observe(time.perf_counter() - started)

    return timed
