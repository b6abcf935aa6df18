"""Prometheus metrics at ``GET /metrics``: what an operator alerts on.

Gauges are computed when scraped — job counts by state from the store, agents and printers from
the presence registry (the fleet summary), broker connection from the MQTT session — so the hot
request path carries no instrumentation cost. Labels hold states and conditions, never branch or
agent ids: the endpoint needs no authentication and leaks no tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from litestar import Response, get
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ._mqtt import MqttLink
from ._registry import Registry
from .fleet._summary import summarize
from .jobs import JobService
from .store import JobState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
            "printermaster_jobs", "Jobs in the store by state", labels=["state"]
        )
        for state in JobState:
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
        yield GaugeMetricFamily(
            "printermaster_store_up",
            "1 while the job store answers",
            value=1 if self.snapshot.store_ok else 0,
        )


class Metrics:
    def __init__(self, registry: Registry, link: MqttLink) -> None:
        self.prometheus = CollectorRegistry()
        self.collector = _FleetCollector(registry, link)
        self.prometheus.register(self.collector)

    async def render(self, jobs: JobService) -> bytes:
        try:
            self.collector.snapshot = _Snapshot(jobs=await jobs.store.count_by_state())
        except Exception:
            self.collector.snapshot = _Snapshot(store_ok=False)
        return generate_latest(self.prometheus)


@get("/metrics", summary="Prometheus metrics", tags=["health"], include_in_schema=False)
async def metrics_endpoint(metrics: Metrics, job_service: JobService) -> Response[bytes]:
    return Response(await metrics.render(job_service), media_type=CONTENT_TYPE)
