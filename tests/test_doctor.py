"""``printermaster agent doctor`` against real things: a healthy stack, a wrong password, a broker
that was stopped, a role without the probe topic, TLS listeners with the wrong CA, an expired
certificate and a plain port, and a printer out of paper. Each names the failing step and a fix."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import ipaddress
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent_config import dump_config
from branch_agent import load_config
from branch_agent._doctor import doctor_command
from branch_agent._printers import PrinterConfig
from broker import agent_role_name, free_port
from ops.fake_printer import FakePrinter
from printermaster.stack import AgentHandle, Stack
from protocol import probe_topic, request_topic
from tests.conftest import unique_id

STEPS = ("config", "data dir", "DNS", "TCP", "TLS", "MQTT login", "ACL", "round trip")


def doctor(path: Path, timeout: float = 3.0) -> tuple[int, str]:
    out = io.StringIO()
    rc = doctor_command(str(path), timeout=timeout, out=out)
    return rc, out.getvalue()


def verdicts(output: str) -> dict[str, str]:
    """``{step name: verdict}`` from the verdict lines."""
    found = {}
    for line in output.splitlines():
        if line.startswith("["):
            verdict, rest = line[1:].split("]", 1)
            found[rest.strip().split(": ", 1)[0]] = verdict
    return found


def rewrite(handle: AgentHandle, tmp_path: Path, **changes: Any) -> Path:
    """A copy of the agent's config with ``changes`` (``mqtt`` merged key by key)."""
    config = load_config(handle.config_path, env={})
    if "mqtt" in changes:
        changes["mqtt"] = msgspec.structs.replace(config.mqtt, **changes["mqtt"])
    if "printers" in changes:
        changes["printers"] = msgspec.convert(changes["printers"], list[PrinterConfig])
    path = tmp_path / "agent.toml"
    path.write_text(dump_config(msgspec.structs.replace(config, **changes)))
    return path


@pytest.fixture
def agent(stack: Stack) -> AgentHandle:
    """A provisioned agent config, not running."""
    return stack.add_agent(unique_id("b"), unique_id("a"), ["POS-80C"], start=False)


def test_healthy_stack_passes_every_step(agent: AgentHandle) -> None:
    rc, out = doctor(agent.config_path)
    assert rc == 0, out
    steps = verdicts(out)
    assert all(steps[name] == "OK" for name in STEPS if name != "TLS"), out
    assert steps["TLS"] == "SKIP"  # tls = false on loopback is not a failure
    assert steps["printer POS-80C (virtual " + str(agent.data_dir / "virtual" / "POS-80C") + ")"]
    assert "All checks passed" in out
    assert probe_topic(agent.branch_id, agent.agent_id) in out
    password = load_config(agent.config_path, env={}).mqtt.password
    assert password not in out


def test_doctor_does_not_disturb_a_running_agent(
    stack: Stack, agent: AgentHandle, tmp_path: Path
) -> None:
    agent.process.start()
    try:
        stack.wait_agent(agent.branch_id, agent.agent_id)
        rc, out = doctor(agent.config_path)
        assert rc == 0, out
        with stack.client(timeout=15) as http:
            response = http.post(f"/v1/branches/{agent.branch_id}/printers/POS-80C/test", json={})
        assert response.status_code == 200, response.text
    finally:
        agent.process.stop()


def test_wrong_password_names_the_login_step(agent: AgentHandle, tmp_path: Path) -> None:
    path = rewrite(agent, tmp_path, mqtt={"password": "not-the-password"})
    rc, out = doctor(path)
    assert rc == 1
    steps = verdicts(out)
    assert steps["TCP"] == "OK"
    assert steps["MQTT login"] == "FAIL"
    # Mosquitto 2.0 says 0x87 for a wrong password (0x86 in MQTT 5's own words): both are named
    assert "wrong username or password" in out
    assert "(0x87)" in out or "(0x86)" in out
    assert "rotate its credentials" in out
    assert steps["ACL"] == steps["round trip"] == "SKIP"
    assert "not-the-password" not in out


def test_stopped_broker_names_the_tcp_step(tmp_path: Path) -> None:
    with Stack(tmp_path / "own", mqtt_port=free_port(), http_port=free_port()) as own:
        own.start_broker()
        handle = own.add_agent("b1", "a1", ["POS-80C"], start=False)
        rc, out = doctor(handle.config_path)
        assert rc == 0, out
        own.broker.stop()
        rc, out = doctor(handle.config_path)
    assert rc == 1
    steps = verdicts(out)
    assert steps["DNS"] == "OK"
    assert steps["TCP"] == "FAIL"
    assert "refused the connection" in out
    assert "is the broker running?" in out
    assert all(steps[name] == "SKIP" for name in ("TLS", "MQTT login", "ACL", "round trip"))
    assert steps["printer POS-80C (virtual " + str(handle.data_dir / "virtual/POS-80C") + ")"]


def test_unresolvable_host_names_the_dns_step(agent: AgentHandle, tmp_path: Path) -> None:
    path = rewrite(agent, tmp_path, mqtt={"host": "broker.invalid"})
    rc, out = doctor(path)
    assert rc == 1
    assert verdicts(out)["DNS"] == "FAIL"
    assert "cannot resolve 'broker.invalid'" in out


@pytest.mark.parametrize("legacy", ["role before the probe", "probe send refused"])
def test_role_without_probe_topic_names_the_round_trip(
    stack: Stack, agent: AgentHandle, legacy: str
) -> None:
    request = request_topic(agent.branch_id, agent.agent_id)
    role = agent_role_name(agent.branch_id, agent.agent_id)

    async def downgrade() -> None:
        async with stack.admin() as admin:
            acl = {"rolename": role, "topic": probe_topic(agent.branch_id, agent.agent_id)}
            await admin.command("removeRoleACL", acltype="publishClientSend", **acl)
            if legacy == "probe send refused":
                return
            # a role as provisioned before the probe existed: exactly ``req``, not ``req/#``
            for acltype in ("subscribePattern", "publishClientReceive"):
                await admin.command(
                    "removeRoleACL", rolename=role, acltype=acltype, topic=f"{request}/#"
                )
                await admin.command(
                    "addRoleACL", rolename=role, acltype=acltype, topic=request, allow=True
                )

    asyncio.run(downgrade())
    rc, out = doctor(agent.config_path)
    assert rc == 1
    steps = verdicts(out)
    assert steps["ACL"] == "OK"
    assert steps["round trip"] == "FAIL"
    assert "predates the probe topic" in out
    assert ("SUBACK 0x87" if legacy == "role before the probe" else "PUBACK 0x87") in out


def test_paper_out_printer_fails_its_step(
    agent: AgentHandle, tmp_path: Path, fake_printer: FakePrinter
) -> None:
    fake_printer.state.paper = "out"
    printer = {"kind": "network", "name": "BAR", "host": "127.0.0.1", "port": fake_printer.port}
    path = rewrite(agent, tmp_path, printers=[printer])
    rc, out = doctor(path)
    assert rc == 1
    assert verdicts(out)[f"printer BAR (network 127.0.0.1:{fake_printer.port})"] == "FAIL"
    assert "PAPER_OUT" in out
    assert "fix: load paper" in out
    assert "1 check(s) failed" in out


def test_bad_config_exits_2_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('branch_id = "b1"\nagent_id = "a 1"\n[mqtt]\nusername = "u"\npassword = "p"\n')
    done = subprocess.run(
        [sys.executable, "-m", "printermaster", "agent", "doctor", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "[FAIL] config" in done.stdout
    assert "agent_id" in done.stdout


# --- TLS: a throw-away CA and a tiny TLS listener of our own --------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], *, expired: bool = False
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    end = now - dt.timedelta(days=1) if expired else now + dt.timedelta(days=30)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=10))
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@contextlib.contextmanager
def tls_listener(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> Iterator[int]:
    """Accept on a free loopback port, do the TLS handshake, then close (no MQTT behind it)."""
    (tmp_path / "server.pem").write_bytes(pem(cert))
    (tmp_path / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError, ssl.SSLError), conn:
                conn.settimeout(2)
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)

    thread = threading.Thread(target=serve, name="tls-listener", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def tls_config(tmp_path: Path, port: int, ca: x509.Certificate | None) -> Path:
    mqtt: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "username": "agent:b1:a1",
        "password": "tls-secret",
        "tls": True,
    }
    if ca is not None:
        (tmp_path / "ca.pem").write_bytes(pem(ca))
        mqtt["ca_file"] = str(tmp_path / "ca.pem")
    path = tmp_path / "agent.toml"
    data = {"branch_id": "b1", "agent_id": "a1", "data_dir": str(tmp_path / "d"), "mqtt": mqtt}
    path.write_text(tomli_w.dumps(data))
    return path


def test_tls_with_the_wrong_ca_names_the_tls_step(tmp_path: Path) -> None:
    broker_ca, other_ca = make_ca("broker CA"), make_ca("some other CA")
    with tls_listener(tmp_path, *make_server_cert(broker_ca)) as port:
        rc, out = doctor(tls_config(tmp_path, port, other_ca[1]))
    assert rc == 1
    steps = verdicts(out)
    assert steps["TCP"] == "OK"
    assert steps["TLS"] == "FAIL"
    assert "not signed by the configured CA" in out
    assert "set mqtt.ca_file" in out
    assert steps["MQTT login"] == "SKIP"
    assert "tls-secret" not in out


def test_tls_with_the_right_ca_passes_the_tls_step(tmp_path: Path) -> None:
    ca = make_ca("broker CA")
    with tls_listener(tmp_path, *make_server_cert(ca)) as port:
        rc, out = doctor(tls_config(tmp_path, port, ca[1]), timeout=2)
    steps = verdicts(out)
    assert steps["TLS"] == "OK", out
    assert "certificate verified for 127.0.0.1" in out
    assert "(30 days)" in out or "(29 days)" in out
    # nothing speaks MQTT behind this listener: the next step says so
    assert steps["MQTT login"] == "FAIL"
    assert rc == 1


def test_expired_certificate_is_named(tmp_path: Path) -> None:
    ca = make_ca("broker CA")
    with tls_listener(tmp_path, *make_server_cert(ca, expired=True)) as port:
        rc, out = doctor(tls_config(tmp_path, port, ca[1]))
    assert rc == 1
    assert verdicts(out)["TLS"] == "FAIL"
    assert "certificate has expired" in out
    assert "renew the broker's certificate" in out


def test_tls_against_a_plain_port_names_the_tls_step(agent: AgentHandle, tmp_path: Path) -> None:
    path = rewrite(agent, tmp_path, mqtt={"tls": True})
    rc, out = doctor(path)
    assert rc == 1
    assert verdicts(out)["TLS"] == "FAIL"
    assert "does not speak TLS" in out
