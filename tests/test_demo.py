"""`printermaster demo`: the whole system from one command, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from broker import free_port

from ._wait import eventually

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {
    "api_url",
    "api_token",
    "mqtt_host",
    "mqtt_port",
    "branch_id",
    "agent_id",
    "printer_id",
    "debug_username",
    "debug_password",
    "virtual_printer_dir",
}


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_runs_prints_and_stops_cleanly(tmp_path: Path) -> None:
    http_port, mqtt_port = free_port(), free_port()
    state = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "printermaster",
            "demo",
            "--state-dir",
            str(state),
            "--http-port",
            str(http_port),
            "--mqtt-port",
            str(mqtt_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:

        def written() -> dict[str, Any]:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            info: dict[str, Any] = json.loads((state / "demo.json").read_text())
            assert FIELDS <= set(info), info  # (a file still being written is not yet info)
            return info

        info = eventually(
            written,
            timeout=60,
            interval=0.1,
            what="demo.json written within 60 s",
            ignoring=(FileNotFoundError, ValueError),
        )
        assert info["mqtt_port"] == mqtt_port and info["api_url"].endswith(f":{http_port}")
        response = httpx.post(
            f"{info['api_url']}/v1/branches/{info['branch_id']}/printers/{info['printer_id']}/test",
            headers={"Authorization": f"Bearer {info['api_token']}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        printed = list(Path(info["virtual_printer_dir"]).glob("*.prn"))
        assert [p.stem for p in printed] == [response.json()["job_id"]]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "PrinterMaster demo is running" in out and "curl" in out
    assert "stopped." in out
    assert not listening(http_port) and not listening(mqtt_port)


def _hold_1883() -> socket.socket | None:
    """Make sure 1883 is taken (the shared Mosquitto usually holds it); None if it already is."""
    if listening(1883):
        return None
    sock = socket.socket()
    sock.bind(("127.0.0.1", 1883))
    sock.listen()
    return sock


def _run_demo_once(
    state: Path, http_port: int, *, restart_agent: bool = False
) -> tuple[dict[str, object], str]:
    """Start ``printermaster demo`` (broker port left to the demo), wait until it says it is
    running, (restart the agent as the banner says,) print a test page through the API, stop
    it; its demo.json and its output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "printermaster", "demo", "--state-dir", str(state)]
    proc = subprocess.Popen(
        [*argv, "--http-port", str(http_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # ends when the demo exits
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        out = "".join(lines)
        assert "PrinterMaster demo is running" in out, out
        info = json.loads((state / "demo.json").read_text())
        if restart_agent:
            match = re.search(r"kill -TERM (\d+)", out)
            assert match, out
            os.kill(int(match.group(1)), signal.SIGTERM)
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("agent restarted"):
                    break
            _wait_online(str(info["api_url"]), str(info["api_token"]))
        response = httpx.post(
            f"{info['api_url']}/v1/branches/{info['branch_id']}/printers/{info['printer_id']}/test",
            headers={"Authorization": f"Bearer {info['api_token']}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + rest
    return info, "".join(lines)


def _wait_online(api_url: str, token: str, timeout: float = 15.0) -> None:
    def online() -> bool:
        agents = httpx.get(
            f"{api_url}/v1/branches/demo/agents",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        ).json()
        assert any(a["agent_id"] == "agent-1" and a["online"] for a in agents), (
            f"agent not back online: {agents}"
        )
        return True

    eventually(online, timeout=timeout, interval=0.05)


def test_demo_runs_again_and_again_with_1883_taken(tmp_path: Path) -> None:
    """Three runs on one state directory, the broker on a new free port each time."""
    held = _hold_1883()
    state = tmp_path / "demo"
    try:
        ports = []
        for run in range(3):
            started = time.monotonic()
            info, out = _run_demo_once(state, free_port(), restart_agent=run == 1)
            ports.append(info["mqtt_port"])
            print(f"\ndemo run {run + 1}: up after {time.monotonic() - started:.1f} s")
            config = state / "agents" / "demo.agent-1.toml"
            assert f"Agent config  {config}" in out, out
            assert "restart the agent" in out.lower(), out
    finally:
        if held is not None:
            held.close()
    assert 1883 not in ports
    assert len(list((state / "agents" / "demo.agent-1" / "virtual" / "POS-80C").glob("*.prn"))) == 3
