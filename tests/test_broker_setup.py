"""``printermaster broker setup``: a production broker directory that Mosquitto runs as it is,
with TLS for agents, the bootstrap logins, and the same logins on a second broker."""

from __future__ import annotations

import asyncio
import getpass
import json
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import aiomqtt
import msgspec
from cryptography import x509

from broker import free_port, wait_for_port
from printermaster.stack import child_env


def _setup(directory: Path, *extra: str) -> tuple[int, int]:
    port, tls_port = free_port(), free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "printermaster",
            "broker",
            "setup",
            "--dir",
            str(directory),
            "--hostname",
            "mq.example.test",
            "--port",
            str(port),
            "--tls-port",
            str(tls_port),
            "--websockets-port",
            "0",
            "--user",
            getpass.getuser(),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "systemctl enable --now printermaster-broker.service" in done.stdout
    return port, tls_port


async def _connect(port: int, creds: dict[str, str], tls: ssl.SSLContext | None = None) -> None:
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        username=creds["username"],
        password=creds["password"],
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=tls,
        timeout=10,
    ) as client:
        await client.subscribe("pm/v1/+/agents/+/presence")


def test_setup_writes_a_broker_that_runs_with_tls_and_shared_logins(tmp_path: Path) -> None:
    first, second = tmp_path / "b1", tmp_path / "b2"
    port, tls_port = _setup(first)
    secrets = json.loads((first / "secrets.json").read_text())
    assert stat.S_IMODE((first / "secrets.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((first / "dynamic-security.json").stat().st_mode) == 0o600
    unit = (first / "printermaster-broker.service").read_text()
    assert f"-c {first / 'mosquitto.conf'}" in unit and "CAP_NET_BIND_SERVICE" in unit
    port2, _ = _setup(second, "--secrets", str(first / "secrets.json"))
    assert json.loads((second / "secrets.json").read_text()) == secrets
    brokers = []
    try:
        for directory, plain in ((first, port), (second, port2)):
            config = (directory / "mosquitto.conf").read_text()
            assert "allow_anonymous false" in config and "dynamic_security" in config
            # run Mosquitto on the written config exactly as the unit does
            proc = subprocess.Popen(
                ["mosquitto", "-c", str(directory / "mosquitto.conf")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            brokers.append(proc)
            wait_for_port("127.0.0.1", plain, 10)
            asyncio.run(_connect(plain, secrets["cloud"]))
            asyncio.run(_connect(plain, secrets["admin"]))
        tls = ssl.create_default_context(cafile=str(first / "tls" / "ca.pem"))
        tls.check_hostname = False  # the certificate names mq.example.test, we dial 127.0.0.1
        wait_for_port("127.0.0.1", tls_port, 10)
        asyncio.run(_connect(tls_port, secrets["cloud"], tls))
        cert = x509.load_pem_x509_certificate((first / "tls" / "server.pem").read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "mq.example.test" in names.get_values_for_type(x509.DNSName)
    finally:
        for proc in brokers:
            proc.terminate()
            proc.wait(10)


def test_the_example_api_settings_load_with_every_broker() -> None:
    from cloud_api import load_settings
    from cloud_api.provisioning._render import BrokerEndpoint

    settings = load_settings(Path(__file__).parent.parent / "ops" / "api.example.toml")
    assert [(e.host, e.port) for e in settings.mqtt.endpoints()] == [
        ("mq1.internal", 1883),
        ("mq2.internal", 1883),
    ]
    assert settings.admin_mqtt is not None and len(settings.admin_mqtt.endpoints()) == 2
    # the agents' config lists both brokers as branches reach them (CA file left out here)
    provisioning = msgspec.structs.replace(settings.provisioning, ca_file=None)
    endpoint = BrokerEndpoint.from_settings(
        msgspec.structs.replace(settings, provisioning=provisioning)
    )
    assert endpoint.brokers == (("mq1.example.com", 8883), ("mq2.example.com", 8883))
    assert endpoint.tls


def test_the_shipped_broker_unit_is_the_one_setup_writes() -> None:
    from broker import BrokerConfig
    from printermaster._broker_setup import render_unit

    config = BrokerConfig(Path("/etc/printermaster/broker"), 1883, user="mosquitto")
    shipped = Path(__file__).parent.parent / "ops" / "systemd" / "printermaster-broker.service"
    assert shipped.read_text() == render_unit(config, "mosquitto", "/usr/sbin/mosquitto")
