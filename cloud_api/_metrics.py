"""Prometheus metrics at ``GET /metrics``: what an operator alerts on, and where time goes.

Two kinds. Gauges computed when scraped: jobs not yet final by state (one indexed query over
those states only, so a scrape costs the same however many finished jobs the table holds),
agents and printers from the presence registry, the agents' resource use summed and maxed
over the online ones, broker connection and store health. Counters and histograms kept as
things happen (:mod:`._observe`): HTTP requests by route, each job stage, job outcomes by
error code, store operations, broker sessions, purged jobs.

Labels hold states, routes, stages and error codes, never branch or agent ids: the endpoint
needs no authentication and leaks no tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from litestar import Response, get
from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pmlog import LATENCY_BUCKETS

from ._loopmetrics import LoopCounter, LoopHistogram
from ._mqtt import MqttLink
from ._registry import Registry
from .fleet._summary import summarize
from .jobs import JobService
from .store import FINAL_STATES, JobState
from .store._retention import count_unfinished

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# ``*_created`` series double the output and nothing here reads them
disable_created_metrics()  # type: ignore[no-untyped-call]

STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

UNFINISHED_STATES = tuple(s for s in JobState if s not in FINAL_STATES)


@dataclass
class _Snapshot:
    jobs: dict[str, int] = field(default_factory=dict)
    store_ok: bool = True


class _FleetCollector(Collector):
    def __init__(self, registry: Registry, link: MqttLink) -> None:
        self.registry = registry
        self.link = link
        self.snapshot = _Snapshot()

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "printermaster_jobs", "Jobs not yet final in the store, by state", labels=["state"]
        )
        for state in UNFINISHED_STATES:
            jobs.add_metric([state.value], self.snapshot.jobs.get(state.value, 0))
        yield jobs
        totals = summarize(self.registry, may_see=lambda _: True, limit=0).totals
        agents = GaugeMetricFamily(
            "printermaster_agents", "Known agents by presence", labels=["state"]
        )
        agents.add_metric(["online"], totals.agents_online)
        agents.add_metric(["offline"], totals.agents_offline)
        yield agents
        printers = GaugeMetricFamily(
            "printermaster_printers",
            "Printers by condition (ready, warning, down) and by problem",
            labels=["condition"],
        )
        for name in (
            "ready",
            "warning",
            "down",
            "agent_offline",
            "printer_offline",
            "cover_open",
            "paper_out",
            "paper_near_end",
            "last_error",
        ):
            printers.add_metric([name], getattr(totals.printers, name))
        yield printers
        yield GaugeMetricFamily(
            "printermaster_branches", "Branches with at least one agent", value=totals.branches
        )
        yield from self._agent_resources()
        yield GaugeMetricFamily(
            "printermaster_broker_connected",
            "1 while the API holds its broker session",
            value=1 if self.link.ready.is_set() else 0,
        )
        yield CounterMetricFamily(
            "printermaster_mqtt_dropped",
            "MQTT messages dropped because their agent sent more than mqtt_rate_per_agent",
            value=self.link.dropped,
        )
        yield CounterMetricFamily(
            "printermaster_mqtt_connections",
            "Broker sessions this API instance opened (more than one: it reconnected)",
            value=getattr(self.link, "sessions", 0),
        )
        yield GaugeMetricFamily(
            "printermaster_store_up",
            "1 while the job store answers",
            value=1 if self.snapshot.store_ok else 0,
        )

    def _agent_resources(self) -> Iterator[Metric]:
        """Resource use from the online agents' status heartbeats: sum and max, no agent ids."""
        rss = GaugeMetricFamily(
            "printermaster_agent_rss_bytes", "Online agents' resident memory", labels=["stat"]
        )
        cpu = GaugeMetricFamily(
            "printermaster_agent_cpu_percent",
            "Online agents' CPU use (100 = one core)",
            labels=["stat"],
        )
        queue = GaugeMetricFamily(
            "printermaster_agent_queue_depth",
            "Jobs accepted by online agents and not started",
            labels=["stat"],
        )
        sums = [0.0, 0.0, 0.0]
        maxes = [0.0, 0.0, 0.0]
        for agent in self.registry.agents():
            status = agent.status
            if status is None or not agent.online():
                continue
            for i, value in enumerate((status.rss_bytes, status.cpu_percent, status.queue_depth)):
                sums[i] += value
                maxes[i] = max(maxes[i], value)
        for family, total, top in zip((rss, cpu, queue), sums, maxes, strict=True):
            family.add_metric(["sum"], total)
            family.add_metric(["max"], top)
            yield family


class Metrics:
    """The app's metrics: its own registry (several apps in one process stay apart)."""

    def __init__(self, registry: Registry, link: MqttLink) -> None:
        self.prometheus = CollectorRegistry()
        self.collector = _FleetCollector(registry, link)
        self.prometheus.register(self.collector)
        reg = self.prometheus
        self.http_seconds = LoopHistogram(
            "printermaster_http_request_duration_seconds",
            "HTTP requests: time from the request to the end of the response, by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.http_responses = LoopCounter(
            "printermaster_http_responses",
            "HTTP responses by route and status",
            ["method", "route", "status"],
            registry=reg,
        )
        self.test_print_seconds = LoopHistogram(
            "printermaster_test_print_seconds",
            "POST …/printers/{printer}/test: the whole HTTP test print, by status",
            ["status"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.stage_seconds = LoopHistogram(
            "printermaster_job_stage_seconds",
            "Time a job spent in each stage this API instance saw begin and end: "
            "queued (waiting for its agent, until sent), sent (until the agent accepted, or "
            "printed if it answered with the final alone), accepted (until printed)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.outcomes = LoopCounter(
            "printermaster_job_outcomes",
            "Jobs that reached a final state in this API instance, by state and error code",
            ["state", "code"],
            registry=reg,
        )
        self.store_seconds = LoopHistogram(
            "printermaster_store_operation_seconds",
            "Job store operations by name",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=reg,
        )
        self.purged = LoopCounter(
            "printermaster_jobs_purged",
            "Finished jobs deleted by the retention task",
            registry=reg,
        )

    async def render(self, jobs: JobService) -> bytes:
        try:
            self.collector.snapshot = _Snapshot(jobs=await count_unfinished(jobs.store))
        except Exception:
            self.collector.snapshot = _Snapshot(store_ok=False)
        return generate_latest(self.prometheus)


@get("/metrics", summary="Prometheus metrics", tags=["health"], include_in_schema=False)
async def metrics_endpoint(metrics: Metrics, job_service: JobService) -> Response[bytes]:
    return Response(await metrics.render(job_service), media_type=CONTENT_TYPE)
