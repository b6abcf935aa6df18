"""`printermaster demo`: the whole system from one command, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from broker import free_port

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
        deadline = time.monotonic() + 60
        while not (state / "demo.json").exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "demo.json not written within 60 s"
            time.sleep(0.1)
        time.sleep(0.2)
        info = json.loads((state / "demo.json").read_text())
        assert FIELDS <= set(info)
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
