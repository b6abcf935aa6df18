"""``printermaster demo``: the whole system on this machine, ready to try."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import tomllib
from pathlib import Path

import tomli_w

from broker import free_port, port_is_free

from .stack import AgentHandle, ChildProcess, Stack

BRANCH_ID = "demo"
AGENT_ID = "agent-1"
PRINTER_ID = "POS-80C"


def _port(wanted: int | None, default: int) -> int:
    if wanted is not None:
        return wanted
    return default if port_is_free(default) else free_port()


def run_demo(state_dir: str, *, http_port: int | None, mqtt_port: int | None) -> int:
    stack = Stack(
        Path(state_dir),
        mqtt_port=_port(mqtt_port, 1883),
        http_port=_port(http_port, 8000),
        debug_login=False,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        print(f"starting Mosquitto on 127.0.0.1:{stack.mqtt_port} ...", flush=True)
        stack.start_broker()
        print("starting the API ...", flush=True)
        stack.start_api()
        key = (BRANCH_ID, AGENT_ID)
        print(f"starting agent {AGENT_ID} in branch {BRANCH_ID} ...", flush=True)
        if (stack.state_dir / "agents" / f"{BRANCH_ID}.{AGENT_ID}.toml").exists():
            _restart_agent(stack)
        else:
            stack.add_agent(BRANCH_ID, AGENT_ID, [PRINTER_ID])
        took = stack.wait_agent(BRANCH_ID, AGENT_ID)
        handle = stack.agents[key]
        debug = stack.branch_debug_creds(BRANCH_ID)
        info = {
            "api_url": stack.api_url,
            "api_token": stack.api_token,
            "mqtt_host": "127.0.0.1",
            "mqtt_port": stack.mqtt_port,
            "branch_id": BRANCH_ID,
            "agent_id": AGENT_ID,
            "printer_id": PRINTER_ID,
            "debug_username": debug.username,
            "debug_password": debug.password,
            "virtual_printer_dir": str(handle.printer_dir(PRINTER_ID)),
            "mqtt_tls_port": stack.tls_port,
            "mqtt_websockets_port": stack.websockets_port,
            "ca_file": str(stack.broker.config.tls_dir / "ca.pem"),
        }
        info_path = stack.state_dir / "demo.json"
        fd = os.open(info_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh, indent=2)
        print(_banner(info, info_path, took, handle.config_path, handle.process), flush=True)
        _supervise(handle.process, stop)
        print("\nstopping ...", flush=True)
    finally:
        stack.stop()
    print("stopped.")
    return 0


def _supervise(agent: ChildProcess, stop: threading.Event) -> None:
    """Until ``stop``: start the agent again whenever it exits (a restart after a config
    edit is ``kill -TERM <pid>``; the new process reads the file again)."""
    while not stop.wait(0.2):
        if agent.running():
            continue
        code = agent.proc.returncode if agent.proc else None
        print(
            f"agent exited (code {code}); starting it again with {agent.argv[-1]}",
            flush=True,
        )
        agent.start()
        print(f"agent restarted: pid {agent.pid}", flush=True)


def _follow_broker(path: Path, stack: Stack) -> None:
    """Point an earlier run's agent config at this run's broker (its port changes when 1883 is
    taken); everything else in the file, edits included, stays as it is."""
    config = tomllib.loads(path.read_text())
    mqtt = config.setdefault("mqtt", {})
    if mqtt.get("host") == "127.0.0.1" and mqtt.get("port") == stack.mqtt_port:
        return
    mqtt.update(host="127.0.0.1", port=stack.mqtt_port)
    tmp = path.with_suffix(".toml.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        tomli_w.dump(config, fh)
    os.replace(tmp, path)


def _restart_agent(stack: Stack) -> None:
    """A demo state directory from an earlier run: reuse its agent and credentials."""
    path = stack.state_dir / "agents" / f"{BRANCH_ID}.{AGENT_ID}.toml"
    _follow_broker(path, stack)
    process = ChildProcess(
        f"agent {BRANCH_ID}/{AGENT_ID}",
        [sys.executable, "-m", "printermaster", "agent", "run", "--config", str(path)],
        path.with_suffix(".log"),
    ).start()
    stack.agents[(BRANCH_ID, AGENT_ID)] = AgentHandle(
        BRANCH_ID,
        AGENT_ID,
        path,
        stack.state_dir / "agents" / f"{BRANCH_ID}.{AGENT_ID}",
        process,
        [PRINTER_ID],
    )


def _banner(
    info: dict[str, object], info_path: Path, took: float, config: Path, agent: ChildProcess
) -> str:
    i = info
    return f"""
PrinterMaster demo is running (agent online after {took:.2f} s).

  API           {i["api_url"]}      (OpenAPI: {i["api_url"]}/schema)
  API token     {i["api_token"]}
  Console       {i["api_url"]}/console   (sign in with the API token)
  Broker        mqtt://{i["mqtt_host"]}:{i["mqtt_port"]}   mqtts://{i["mqtt_host"]}:{i["mqtt_tls_port"]}
                wss://localhost:{i["mqtt_websockets_port"]}/mqtt   (CA {i["ca_file"]})
  Debug login   {i["debug_username"]} / {i["debug_password"]}   (branch {i["branch_id"]} only;
                client id = username; its twin {i["debug_username"]}:send sends)
  Printer       {i["printer_id"]} in branch {i["branch_id"]} (agent {i["agent_id"]})
  Paper         {i["virtual_printer_dir"]}  (one .prn file per printed job)
  Everything    {info_path}
  Agent config  {config}
  Agent log     {agent.log_path}

To restart the agent (after editing its config): kill -TERM {agent.pid}
  It publishes "offline", exits, and the demo starts it again with the config as it is then.

Try a test print:

  curl -s -X POST -H 'Authorization: Bearer {i["api_token"]}' \\
    {i["api_url"]}/v1/branches/{i["branch_id"]}/printers/{i["printer_id"]}/test

Press Ctrl-C to stop.
"""
