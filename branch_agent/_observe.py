"""What the agent tells its operators: one ``branch_agent.jobs`` event per request received and
per reply published (job, branch, agent ids, stage, error code, trace id), the request's
``traceparent`` echoed in every reply, and — when ``metrics_port`` is set — Prometheus metrics
on ``http://127.0.0.1:{metrics_port}/metrics`` (never on another interface).

The trace of a job is kept in memory from its request to its final reply: a reply sent again
after a restart of the agent goes out without one (the cloud then logs it under the job id).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import aiomqtt
import msgspec
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pmlog import LATENCY_BUCKETS, log_event
from protocol import FINAL_STAGES, parse_traceparent, traceparent_of

from ._jobs import CancelRequest, Intake, JobRequest, Refusal
from ._ledger import OutboxEntry

log = logging.getLogger("branch_agent.jobs")

#: Jobs whose trace is remembered at most (the oldest is forgotten first).
MAX_TRACKED: Final = 10_000


class _Error(msgspec.Struct):
    code: str = ""


class _Head(msgspec.Struct):
    """What a log line needs from a reply, read without decoding the rest."""

    stage: str = ""
    at: float = 0.0
    error: _Error | None = None


_decode_head = msgspec.json.Decoder(_Head).decode


class AgentMetrics:
    """The agent's own registry: stage histograms, reply outcomes, and gauges read on scrape."""

    def __init__(self, gauges: Callable[[], dict[str, float]]) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "printermaster_agent_job_stage_seconds",
            "Time a job spent in each stage on the agent: accepted (waiting for its printer, "
            "until printing), printing (until done or failed)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.replies = Counter(
            "printermaster_agent_replies",
            "Replies published, by stage and error code",
            ["stage", "code"],
            registry=self.registry,
        )
        self.registry.register(_Gauges(gauges))


class _Gauges(Collector):
    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        values = self._read()
        for name, value in values.items():
            if name.endswith("_total"):
                yield CounterMetricFamily(f"printermaster_agent_{name[:-6]}", name, value=value)
            else:
                yield GaugeMetricFamily(f"printermaster_agent_{name}", name, value=value)


class AgentObserver:
    """Logs each request and reply with its ids and trace; remembers traces until the final
    reply; feeds :class:`AgentMetrics` when there is one."""

    def __init__(self, branch_id: str, agent_id: str) -> None:
        self.branch_id = branch_id
        self.agent_id = agent_id
        self.metrics: AgentMetrics | None = None
        #: job id -> its request's traceparent, until its final reply
        self._traces: dict[str, str] = {}
        #: job id -> its current stage (accepted, printing) and when it began (agent clock)
        self._since: dict[str, tuple[str, float]] = {}

    def received(self, message: aiomqtt.Message, intake: Intake) -> None:
        """A request arrived (before it is recorded): remember its trace, log it."""
        traceparent = traceparent_of(message.properties)
        job_id = None
        match intake:
            case JobRequest() | CancelRequest() | Refusal():
                job_id = intake.job_id
        if job_id is not None and traceparent is not None:
            self._traces[job_id] = traceparent
            if len(self._traces) > MAX_TRACKED:
                del self._traces[next(iter(self._traces))]
        if not log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "job_id": job_id,
            "branch_id": self.branch_id,
            "agent_id": self.agent_id,
            "trace_id": parse_traceparent(traceparent),
        }
        match intake:
            case JobRequest(method=method, printer=printer):
                fields |= {"method": method, "printer_id": printer}
            case CancelRequest(target=target):
                fields |= {"method": "job.cancel", "target": target}
            case Refusal(code=code):
                fields["code"] = str(code)
        log_event(log, logging.INFO, "request received", fields)

    def reply(self, entry: OutboxEntry) -> str | None:
        """A reply is being published: log it; returns the ``traceparent`` it carries."""
        job_id = entry.job_id
        traceparent = self._traces.get(job_id) if job_id is not None else None
        try:
            head = _decode_head(entry.payload)
        except msgspec.DecodeError:
            head = _Head()
        code = head.error.code if head.error is not None else ""
        if job_id is not None:
            self._measure(job_id, head, code)
            if head.stage in FINAL_STAGES:
                self._traces.pop(job_id, None)
        if log.isEnabledFor(logging.INFO):
            fields: dict[str, Any] = {
                "job_id": job_id,
                "branch_id": self.branch_id,
                "agent_id": self.agent_id,
                "stage": head.stage,
                "trace_id": parse_traceparent(traceparent),
            }
            if code:
                fields["code"] = code
            log_event(log, logging.INFO, f"reply {head.stage}", fields)
        return traceparent

    def folded(self, entry: OutboxEntry) -> None:
        """A progress reply its job's final replaced before it was sent: not published, but
        the stage it reports (``at``: when the job reached it) still counts in the histogram."""
        if entry.job_id is None or self.metrics is None:
            return
        try:
            head = _decode_head(entry.payload)
        except msgspec.DecodeError:
            return
        self._time(self.metrics, entry.job_id, head)

    def _measure(self, job_id: str, head: _Head, code: str) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        metrics.replies.labels(head.stage, code).inc()
        self._time(metrics, job_id, head)

    def _time(self, metrics: AgentMetrics, job_id: str, head: _Head) -> None:
        began = self._since.pop(job_id, None)
        if began is not None and head.at:
            metrics.stage_seconds.labels(began[0]).observe(max(0.0, head.at - began[1]))
        if head.stage in ("accepted", "printing") and head.at:
            self._since[job_id] = (head.stage, head.at)
            if len(self._since) > MAX_TRACKED:
                del self._since[next(iter(self._since))]


@contextlib.contextmanager
def metrics_server(
    observer: AgentObserver, port: int | None, gauges: Callable[[], dict[str, float]]
) -> Iterator[int | None]:
    """Serve ``/metrics`` on 127.0.0.1:``port`` for the ``with`` block (nothing when ``port``
    is None); yields the port served (``0`` picks a free one)."""
    if port is None:
        yield None
        return
    metrics = observer.metrics = AgentMetrics(gauges)
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    log.info("metrics on http://127.0.0.1:%d/metrics", server.server_port)
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        observer.metrics = None


def agent_gauges(agent: Any) -> Callable[[], dict[str, float]]:
    """The agent's gauges for :class:`AgentMetrics`, read when scraped."""
    process = agent._process

    def read() -> dict[str, float]:
        with process.oneshot():
            rss = process.memory_info().rss
            cpu = sum(process.cpu_times()[:2])
        return {
            "queue_depth": agent.jobs.queue_depth,
            "outbox_pending": len(agent.outbox),
            "connected": 1.0 if agent.connected.is_set() else 0.0,
            "mqtt_connections_total": agent.sessions,
            "rss_bytes": rss,
            "cpu_seconds_total": cpu,
            "uptime_seconds": time.time() - agent._started_at,
        }

    return read
