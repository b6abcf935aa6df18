"""The alert rules and the Grafana dashboard in ops/: promtool checks and unit-tests the rules;
the dashboard is valid JSON whose every query parses as PromQL and names only metrics that a
live API exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from printermaster.stack import Stack

from .conftest import AgentFactory

OPS = Path(__file__).resolve().parent.parent / "ops"
RULES = OPS / "prometheus" / "alerts.yml"
RULE_TESTS = OPS / "prometheus" / "alerts_test.yml"
DASHBOARD = OPS / "grafana" / "printermaster.json"
METRIC = re.compile(r"\bprintermaster_\w+")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, "promtool is missing: ops/bootstrap.sh installs Debian's prometheus package"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=60)


def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    # every alert has a test
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert alerts <= tested, alerts - tested


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 30
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    queries = []
    for panel in board["panels"]:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            queries.append((panel["title"], target["expr"]))
    return queries


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query as a recording rule (Grafana's ``$__rate_interval`` as 5m): promtool parses
    it."""
    rules: dict[str, Any] = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:query_{i}",
                        "expr": expr.replace("$__rate_interval", "5m"),
                    }
                    for i, (_, expr) in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def exported(text: str) -> set[str]:
    """Every series name /metrics can hold: samples, and the declared families (a labelled
    counter or histogram declares itself before its first sample)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_dashboard_and_alerts_name_only_metrics_a_live_api_exports(
    source: str, stack: Stack, start_agent: AgentFactory
) -> None:
    agent = start_agent()
    with stack.client() as http:
        assert http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test").status_code == 200
    live = exported(httpx.get(f"{stack.api_url}/metrics").text)
    if source == "dashboard":
        used = {name for _, expr in dashboard_queries() for name in METRIC.findall(expr)}
    else:
        used = {
            name
            for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]
            for name in METRIC.findall(rule["expr"])
        }
    assert used, source
    assert used <= live, sorted(used - live)
