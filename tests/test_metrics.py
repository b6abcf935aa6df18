"""GET /metrics: job, agent, printer and dependency gauges an operator alerts on."""

from __future__ import annotations

import re

import httpx

from printermaster.stack import Stack

from .conftest import AgentFactory


def gauge(text: str, name: str, **labels: str) -> float:
    label = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{name}{{{label}}} (\S+)$" if label else rf"^{name} (\S+)$"
    match = re.search(pattern, text, re.M)
    assert match, f"{name} {labels} missing"
    return float(match.group(1))


def sample(text: str, name: str, **labels: str) -> float:
    """A sample's value, 0 when the series does not exist yet (a counter not yet incremented)."""
    try:
        return gauge(text, name, **labels)
    except AssertionError:
        return 0.0


def test_metrics_follow_jobs_agents_and_printers(stack: Stack, start_agent: AgentFactory) -> None:
    before = httpx.get(f"{stack.api_url}/metrics").text
    agent = start_agent()
    with stack.client() as http:
        assert http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test").status_code == 200
    after = httpx.get(f"{stack.api_url}/metrics")
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    text = after.text
    for name, labels in [
        ("printermaster_job_outcomes_total", {"state": "printed", "code": ""}),
        ("printermaster_job_stage_seconds_count", {"stage": "sent"}),
        ("printermaster_test_print_seconds_count", {"status": "200"}),
    ]:
        assert sample(text, name, **labels) == sample(before, name, **labels) + 1, (name, labels)
    # the agent answered the fast test print with its final alone: sent until printed
    accepted = {"stage": "accepted"}
    name = "printermaster_job_stage_seconds_count"
    assert sample(text, name, **accepted) == sample(before, name, **accepted)
    assert gauge(text, "printermaster_jobs", state="queued") >= 0
    assert 'printermaster_jobs{state="printed"}' not in text  # final states are counters
    assert sample(text, "printermaster_store_operation_seconds_count", operation="create_job") > 0
    assert gauge(text, "printermaster_agent_rss_bytes", stat="sum") > 0
    assert gauge(text, "printermaster_agent_queue_depth", stat="max") >= 0
    assert gauge(text, "printermaster_mqtt_connections_total") >= 1
    assert gauge(text, "printermaster_agents", state="online") >= 1
    assert gauge(text, "printermaster_printers", condition="ready") >= 1
    assert gauge(text, "printermaster_broker_connected") == 1
    assert gauge(text, "printermaster_store_up") == 1
    assert agent.branch_id not in text  # no tenant ids in labels


def test_failures_are_counted_by_error_code(stack: Stack, start_agent: AgentFactory) -> None:
    agent = start_agent()
    (agent.printer_dir("POS-80C") / "state.json").write_text('{"paper": "out"}')
    before = httpx.get(f"{stack.api_url}/metrics").text
    url = f"/v1/branches/{agent.branch_id}/printers/POS-80C/test"
    with stack.client() as http:
        # force: past the API's own check, so the agent refuses it and the job fails
        forced = http.post(url, params={"force": "true"})
    assert forced.status_code == 422 and forced.json()["error"]["code"] == "PAPER_OUT"
    after = httpx.get(f"{stack.api_url}/metrics").text
    labels = {"state": "failed", "code": "PAPER_OUT"}
    assert sample(after, "printermaster_job_outcomes_total", **labels) == (
        sample(before, "printermaster_job_outcomes_total", **labels) + 1
    )
    assert sample(after, "printermaster_test_print_seconds_count", status="422") == (
        sample(before, "printermaster_test_print_seconds_count", status="422") + 1
    )


def test_loop_metrics_export_what_prometheus_client_exports() -> None:
    """The API's lock-free histograms and counters write the same text as prometheus_client's
    for the same observations (bounds included: a value on a bound counts in its bucket)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from cloud_api._loopmetrics import LoopCounter, LoopHistogram

    ours, theirs = CollectorRegistry(), CollectorRegistry()
    buckets = (0.001, 0.01, 0.1, 1.0)
    mine = LoopHistogram("h", "doc", ["a"], buckets=buckets, registry=ours)
    ref = Histogram("h", "doc", ["a"], buckets=buckets, registry=theirs)
    count = LoopCounter("c", "doc", ["a", "b"], registry=ours)
    ref_count = Counter("c", "doc", ["a", "b"], registry=theirs)
    plain = LoopCounter("p", "doc", registry=ours)
    ref_plain = Counter("p", "doc", registry=theirs)
    for value in (0.0005, 0.001, 0.002, 0.01, 0.5, 1.0, 3.0, 0.1):
        for label in ("x", "y"):
            mine.labels(label).observe(value)
            ref.labels(label).observe(value)
    count.labels("1", "").inc()
    ref_count.labels("1", "").inc()
    count.labels("1", "").inc(2)
    ref_count.labels("1", "").inc(2)
    plain.inc(3)
    ref_plain.inc(3)
    assert generate_latest(ours).decode() == generate_latest(theirs).decode()
