"""GET /metrics: job, agent, printer and dependency gauges an operator alerts on."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import yaml

from printermaster._stack import Stack

from .conftest import AgentFactory


def gauge(text: str, name: str, **labels: str) -> float:
    label = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{name}{{{label}}} (\S+)$" if label else rf"^{name} (\S+)$"
    match = re.search(pattern, text, re.M)
    assert match, f"{name} {labels} missing"
    return float(match.group(1))


def test_metrics_follow_jobs_agents_and_printers(stack: Stack, start_agent: AgentFactory) -> None:
    before = httpx.get(f"{stack.api_url}/metrics").text
    agent = start_agent()
    with stack.client() as http:
        assert http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test").status_code == 200
    after = httpx.get(f"{stack.api_url}/metrics")
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert (
        gauge(text, "printermaster_jobs", state="printed")
        == gauge(before, "printermaster_jobs", state="printed") + 1
    )
    assert gauge(text, "printermaster_agents", state="online") >= 1
    assert gauge(text, "printermaster_printers", condition="ready") >= 1
    assert gauge(text, "printermaster_broker_connected") == 1
    assert gauge(text, "printermaster_store_up") == 1
    assert agent.branch_id not in text  # no tenant ids in labels


def test_alert_rules_name_only_exported_metrics() -> None:
    rules = yaml.safe_load((Path(__file__).parent.parent / "ops/prometheus/alerts.yml").read_text())
    exported = {
        "printermaster_jobs",
        "printermaster_agents",
        "printermaster_printers",
        "printermaster_branches",
        "printermaster_broker_connected",
        "printermaster_store_up",
    }
    for rule in rules["groups"][0]["rules"]:
        used = set(re.findall(r"printermaster_\w+", rule["expr"]))
        assert used and used <= exported, (rule["alert"], used - exported)
