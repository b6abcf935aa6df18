"""The agent's support commands and its configuration: where the file is, environment overrides,
validation messages that name the key, ``agent printers`` (configured printers with their status,
CUPS queues from a private cupsd) and ``agent test-print`` against the fake network printer."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from agent_config import default_config_path, default_data_dir
from branch_agent import ConfigError, load_config, parse_config
from branch_agent._cli import job_time, print_test_page_command, printers_command
from branch_agent._discovery import discovered_printers
from branch_agent._render import render_test_page
from ops.fake_printer import FakePrinter
from printermaster.stack import Stack
from tests._wait import eventually
from tests.conftest import AgentFactory

BASE: dict[str, Any] = {
    "branch_id": "b1",
    "agent_id": "a1",
    "mqtt": {"host": "127.0.0.1", "port": 1883, "username": "agent:b1:a1", "password": "pw-1"},
}


def write_config(path: Path, **extra: Any) -> Path:
    data = {**BASE, "data_dir": str(path.parent / "data"), **extra}
    path.write_text(tomli_w.dumps(data))
    return path


def run(cmd: Any, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = cmd(*args, out=out, err=err, **kwargs)
    return rc, out.getvalue(), err.getvalue()


# --- configuration --------------------------------------------------------------------------


def test_default_locations_follow_the_platform() -> None:
    if sys.platform == "win32":
        assert default_config_path().parts[-2:] == ("printermaster", "agent.toml")
        assert "ProgramData" in str(default_config_path())
    elif sys.platform == "linux":
        assert default_config_path() == Path("/etc/printermaster/agent.toml")
        assert default_data_dir() == Path("/var/lib/printermaster")
    assert default_data_dir() != default_config_path().parent


def test_missing_default_config_names_the_location() -> None:
    if default_config_path().exists():
        pytest.skip(f"{default_config_path()} exists on this machine")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert str(default_config_path()) in str(caught.value)
    assert "--config" in str(caught.value)


def test_data_dir_defaults_to_the_state_dir() -> None:
    config = parse_config(tomli_w.dumps(BASE))
    assert config.data_dir == str(default_data_dir())


def test_environment_overrides_keys_with_their_types(tmp_path: Path) -> None:
    path = write_config(tmp_path / "agent.toml")
    env = {
        "PRINTERMASTER_BRANCH_ID": "b2",
        "PRINTERMASTER_MQTT__PASSWORD": "from-env",
        "PRINTERMASTER_MQTT__PORT": "8883",
        "PRINTERMASTER_MQTT__TLS": "true",
        "printermaster_discovery__cups": "false",
        "PATH": "/usr/bin",
    }
    config = load_config(path, env=env)
    assert config.branch_id == "b2"
    assert config.mqtt.password == "from-env"
    assert config.mqtt.port == 8883
    assert config.mqtt.tls is True
    assert config.discovery.cups is False
    assert config.agent_id == "a1"  # untouched keys stay as the file says
    assert load_config(path, env={}).mqtt.password == "pw-1"


def test_environment_can_supply_a_whole_section(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('branch_id = "b1"\nagent_id = "a1"\n')
    env = {"PRINTERMASTER_MQTT__USERNAME": "agent:b1:a1", "PRINTERMASTER_MQTT__PASSWORD": "x"}
    assert load_config(path, env=env).mqtt.username == "agent:b1:a1"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PRINTERMASTER_MQTT__PORT": "eighty"}, "PRINTERMASTER_MQTT__PORT: mqtt.port"),
        ({"PRINTERMASTER_MQTT__PASWORD": "x"}, "PRINTERMASTER_MQTT__PASWORD: no setting"),
        ({"PRINTERMASTER_MQTT": "x"}, "PRINTERMASTER_MQTT: 'mqtt' is a table"),
        ({"PRINTERMASTER_PRINTERS": "[]"}, "PRINTERMASTER_PRINTERS: printers cannot"),
        ({"PRINTERMASTER_BRANCH_ID__X": "1"}, "'branch_id' has no keys"),
        ({"PRINTERMASTER_BRANCH_ID": "no spaces"}, "branch_id"),
    ],
)
def test_bad_environment_names_the_variable(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    path = write_config(tmp_path / "agent.toml")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    assert named in str(caught.value)
    assert "pw-1" not in str(caught.value)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"branch_id": "b 1"}, "branch_id"),
        ({"mqtt": {**BASE["mqtt"], "port": "1883"}}, "$.mqtt.port"),
        ({"mqtt": {**BASE["mqtt"], "port": 70000}}, "mqtt.port"),
        ({"mqtt": {**BASE["mqtt"], "prot": 1}}, "$.mqtt"),
        (
            {"printers": [{"kind": "virtual", "name": "ok"}, {"kind": "virtual", "name": "a b"}]},
            "printers[1].name",
        ),
        ({"printers": [{"kind": "network", "name": "n"}]}, "$.printers[0]"),
        ({"discovery": {"cups": "yes"}}, "$.discovery.cups"),
    ],
)
def test_validation_names_the_key(tmp_path: Path, change: dict[str, Any], named: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(tomli_w.dumps({**BASE, **change}))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert named in str(caught.value)
    assert str(path) in str(caught.value)


# --- agent printers -------------------------------------------------------------------------


def network_printer(name: str, printer: FakePrinter) -> dict[str, Any]:
    return {
        "kind": "network",
        "name": name,
        "host": "127.0.0.1",
        "port": printer.port,
        "timeout": 2,
    }


def test_printers_lists_configured_printers_with_status(
    tmp_path: Path, fake_printer: FakePrinter
) -> None:
    with FakePrinter() as empty:
        empty.state.paper = "out"
        path = write_config(
            tmp_path / "agent.toml",
            printers=[
                network_printer("POS-80C", fake_printer),
                network_printer("BAR", empty),
                {"kind": "virtual", "name": "V1"},
            ],
            discovery={"cups": False},
        )
        rc, out, _ = run(printers_command, str(path))
    assert rc == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "network" in lines["POS-80C"]
    assert f"127.0.0.1:{fake_printer.port}" in lines["POS-80C"]
    assert "online, paper ok, cover closed" in lines["POS-80C"]
    assert "paper out" in lines["BAR"]
    assert "virtual" in lines["V1"]
    assert "(discovery.cups = false)" in out
    assert "pw-1" not in out


def test_printers_json_through_the_cli(tmp_path: Path, fake_printer: FakePrinter) -> None:
    fake_printer.state.cover_open = True
    path = write_config(
        tmp_path / "agent.toml",
        printers=[network_printer("POS-80C", fake_printer)],
        discovery={"cups": False},
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "printermaster",
            "agent",
            "printers",
            "--config",
            str(path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    (printer,) = data["configured"]
    assert printer["name"] == "POS-80C"
    assert printer["kind"] == "network"
    assert printer["status"]["cover_open"] is True
    assert data["discovered"] == []


def test_printers_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(tomli_w.dumps({**BASE, "agent_id": "a/1"}))
    rc, _, err = run(printers_command, str(path))
    assert rc == 2
    assert "agent_id" in err


# --- CUPS discovery against a private cupsd -------------------------------------------------


def test_printers_lists_cups_queues_not_configured(
    tmp_path: Path, cupsd: Any, fake_printer: FakePrinter
) -> None:
    uri = f"socket://127.0.0.1:{fake_printer.port}"
    cupsd.add_raw_queue("pm-configured", uri)
    cupsd.add_raw_queue("pm-new-kitchen", uri)
    path = write_config(
        tmp_path / "agent.toml",
        printers=[
            {"kind": "cups", "name": "FRONT", "queue": "pm-configured", "server": cupsd.server}
        ],
        discovery={"cups_server": cupsd.server},
    )
    rc, out, _ = run(printers_command, str(path))
    assert rc == 0
    configured, discovered = out.split("Discovered CUPS queues, not configured:")
    assert "FRONT" in configured
    assert f"queue pm-configured on {cupsd.server}" in configured
    assert "pm-new-kitchen" in discovered
    assert uri in discovered
    assert "pm-configured" not in discovered

    config = load_config(path, env={})

    def listed() -> list[str]:  # the first call starts the listing and never blocks
        names = discovered_printers(config)
        assert "pm-new-kitchen" in names, names
        return list(names)

    names = eventually(listed, timeout=10, interval=0.05)
    assert "pm-configured" not in names


def test_agent_status_carries_discovered_queues(
    stack: Stack, start_agent: AgentFactory, cupsd: Any, fake_printer: FakePrinter
) -> None:
    cupsd.add_raw_queue("pm-offered", f"socket://127.0.0.1:{fake_printer.port}")
    handle = start_agent(
        heartbeat_interval=0.5,
        status_expiry=5.0,
        discovery={"cups_server": cupsd.server, "interval": 0.5},
    )
    with stack.client(timeout=5) as http:

        def offered() -> dict[str, Any]:
            (agent,) = http.get(f"/v1/branches/{handle.branch_id}/agents").json()
            assert "pm-offered" in agent["discovered"], agent
            return dict(agent)

        agent = eventually(offered, timeout=15, interval=0.1)
    assert agent["printers"] == ["POS-80C"]


# --- agent test-print -----------------------------------------------------------------------


def test_test_print_sends_exactly_the_test_page(tmp_path: Path, fake_printer: FakePrinter) -> None:
    path = write_config(
        tmp_path / "agent.toml", printers=[network_printer("POS-80C", fake_printer)]
    )
    rc, out, _ = run(print_test_page_command, str(path), "POS-80C")
    assert rc == 0, out
    assert out.startswith("PRINTED test page local-")
    job_id = out.split()[3]
    expected = render_test_page(
        branch_id="b1", agent_id="a1", printer="POS-80C", job_id=job_id, now=job_time(job_id)
    )
    assert fake_printer.wait_for_jobs(1) == [expected]
    assert f"({len(expected)} bytes)" in out


def test_test_print_paper_out_names_the_error(tmp_path: Path, fake_printer: FakePrinter) -> None:
    fake_printer.state.paper = "out"
    path = write_config(
        tmp_path / "agent.toml", printers=[network_printer("POS-80C", fake_printer)]
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "printermaster",
            "agent",
            "test-print",
            "POS-80C",
            "--config",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "FAILED PAPER_OUT" in done.stdout
    assert fake_printer.jobs == []


def test_test_print_unknown_printer(tmp_path: Path) -> None:
    path = write_config(tmp_path / "agent.toml", printers=[{"kind": "virtual", "name": "V1"}])
    rc, out, _ = run(print_test_page_command, str(path), "NOPE")
    assert rc == 1
    assert "PRINTER_NOT_FOUND" in out
    assert "V1" in out


# --- service files --------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "ops" / "systemd" / "printermaster-agent.service"


def test_systemd_unit_is_hardened() -> None:
    text = UNIT.read_text()
    settings = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in text.splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert settings["User"] == "printermaster"
    assert settings["Restart"] == "on-failure"
    assert settings["ProtectSystem"] == "strict"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["PrivateTmp"] == "yes"
    assert set(settings["SupplementaryGroups"].split()) == {"lp", "dialout"}
    assert settings["ReadWritePaths"] == str(default_data_dir())
    assert "--config " + str(default_config_path()) in settings["ExecStart"]


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    import shutil

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    # The unit names /opt/printermaster/bin/printermaster, which is not installed here; verify
    # checks that ExecStart is executable, so point it at this interpreter for the check.
    unit = tmp_path / UNIT.name
    unit.write_text(
        UNIT.read_text().replace("/opt/printermaster/bin/printermaster", sys.executable)
    )
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "printermaster-agent.service" not in done.stderr, done.stderr


def test_windows_service_wrapper_runs_the_agent() -> None:
    import xml.etree.ElementTree as ET

    service = ET.parse(ROOT / "ops" / "windows" / "printermaster-agent.xml").getroot()
    assert service.findtext("id") == "printermaster-agent"
    assert service.findtext("arguments", "").startswith("agent run --config")
    assert [e.get("action") for e in service.findall("onfailure")] == ["restart"] * 3
