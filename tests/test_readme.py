"""The README's hand-made test print runs verbatim against a running stack."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from printermaster.stack import Stack

from .conftest import AgentFactory, job_files

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```sh\n(.*?)\n```", README.read_text(), re.S)
    assert match, f"README has no block marked {marker}"
    return match.group(1)


def test_mosquitto_recipe_gets_the_reply_with_its_correlation_data(
    stack: Stack, start_agent: AgentFactory, tmp_path: Path
) -> None:
    agent = start_agent()
    debug = stack.branch_debug_creds(agent.branch_id)  # as the demo's: one branch only
    demo = {
        "api_url": stack.api_url,
        "api_token": stack.api_token,
        "mqtt_host": "127.0.0.1",
        "mqtt_port": stack.mqtt_port,
        "branch_id": agent.branch_id,
        "agent_id": agent.agent_id,
        "printer_id": "POS-80C",
        "debug_username": debug.username,
        "debug_password": debug.password,
        "virtual_printer_dir": str(agent.printer_dir("POS-80C")),
    }
    (tmp_path / "demo.json").write_text(json.dumps(demo))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_block("recipe:mqtt-by-hand")],
        capture_output=True,
        text=True,
        timeout=30,
        env={"DEMO_JSON": str(tmp_path / "demo.json"), "PATH": "/usr/bin:/bin:/usr/sbin"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    replies = []
    for line in lines:
        topic, correlation, payload = line.split(" ", 2)
        assert topic == f"pm/v1/{agent.branch_id}/reply/debug/{agent.agent_id}"
        assert correlation == "by-hand-1"
        replies.append(json.loads(payload))
    assert [r["stage"] for r in replies] == ["done"]  # accepted and printing folded into it
    assert replies[0]["result"]["printer"] == "POS-80C"
    assert [f.stem for f in job_files(agent)] == ["by-hand-1"]
