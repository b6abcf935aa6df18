"""TLS for the broker: the generated CA and server certificate, and the TLS and WebSockets+TLS
listeners of a real Mosquitto started with our own config."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import ipaddress
import os
import secrets
import socket
import ssl
import stat
import subprocess
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

import broker as b
from broker._dynsec import write_initial_dynsec
from mqtt_adapter import make_client
from protocol import MAX_PAYLOAD_BYTES, reply_topic, request_topic

# --- certificate generation -------------------------------------------------------------------


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _snapshot(material: b.TlsMaterial) -> dict[str, bytes]:
    return {
        name: getattr(material, name).read_bytes()
        for name in ("ca_cert", "ca_key", "server_cert", "server_key")
    }


def test_server_certificate_names_loopback_and_extra_names(tmp_path: Path) -> None:
    material = b.ensure_tls_material(
        tmp_path, hostnames=["broker.example.net"], ip_addresses=["10.1.2.3", "fd00::7"]
    )
    san = _san(_cert(material.server_cert))
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "broker.example.net"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(ip) for ip in ("127.0.0.1", "::1", "10.1.2.3", "fd00::7")
    }


def test_key_usage_of_ca_and_server(tmp_path: Path) -> None:
    material = b.ensure_tls_material(tmp_path)
    ca, server = _cert(material.ca_cert), _cert(material.server_cert)

    ca_bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ca_bc.critical and ca_bc.value.ca and ca_bc.value.path_length == 0
    ca_ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ca_ku.key_cert_sign and ca_ku.crl_sign

    server_bc = server.extensions.get_extension_for_class(x509.BasicConstraints)
    assert server_bc.critical and not server_bc.value.ca
    server_ku = server.extensions.get_extension_for_class(x509.KeyUsage)
    assert server_ku.critical and server_ku.value.digital_signature
    assert not server_ku.value.key_cert_sign
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert server.not_valid_after_utc - server.not_valid_before_utc <= dt.timedelta(days=398)


@pytest.mark.parametrize(
    "subject",
    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    ids=["localhost", "127.0.0.1"],
)
def test_chain_verifies_against_the_ca_only(tmp_path: Path, subject: Any) -> None:
    material = b.ensure_tls_material(tmp_path / "ours")
    other = b.ensure_tls_material(tmp_path / "other")
    server = _cert(material.server_cert)

    verifier = (
        PolicyBuilder().store(Store([_cert(material.ca_cert)])).build_server_verifier(subject)
    )
    chain = verifier.verify(server, [])
    assert chain[-1] == _cert(material.ca_cert)

    foreign = PolicyBuilder().store(Store([_cert(other.ca_cert)])).build_server_verifier(subject)
    with pytest.raises(VerificationError):
        foreign.verify(server, [])
    assert material.ca_pem == material.ca_cert.read_text()


def test_private_keys_are_mode_0600(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # the mode must not depend on the caller's umask
    try:
        material = b.ensure_tls_material(tmp_path / "tls")
    finally:
        os.umask(old_umask)
    for key in (material.ca_key, material.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700


def test_valid_material_is_reused(tmp_path: Path) -> None:
    first = b.ensure_tls_material(tmp_path, hostnames=["broker.example.net"])
    before = _snapshot(first)
    again = b.ensure_tls_material(tmp_path, hostnames=["broker.example.net"])
    assert _snapshot(again) == before
    assert again.ca_pem == first.ca_pem
    # Asking for fewer names than the certificate has is still satisfied by it.
    assert _snapshot(b.ensure_tls_material(tmp_path)) == before


def test_new_name_reissues_the_server_certificate_but_keeps_the_ca(tmp_path: Path) -> None:
    before = _snapshot(b.ensure_tls_material(tmp_path))
    after = b.ensure_tls_material(tmp_path, hostnames=["mqtt.branch.example"])
    now = _snapshot(after)
    assert now["ca_cert"] == before["ca_cert"] and now["ca_key"] == before["ca_key"]
    assert now["server_cert"] != before["server_cert"]
    assert now["server_key"] != before["server_key"]
    assert "mqtt.branch.example" in _san(_cert(after.server_cert)).get_values_for_type(x509.DNSName)
    _cert(after.server_cert).verify_directly_issued_by(_cert(after.ca_cert))


def test_server_certificate_near_expiry_is_renewed(tmp_path: Path) -> None:
    first = b.ensure_tls_material(tmp_path)
    before = _snapshot(first)
    expires = _cert(first.server_cert).not_valid_after_utc
    later = b.ensure_tls_material(tmp_path, now=expires - dt.timedelta(days=10))
    now = _snapshot(later)
    assert now["ca_cert"] == before["ca_cert"]
    assert now["server_cert"] != before["server_cert"]
    assert _cert(later.server_cert).not_valid_after_utc > expires


def test_expiring_ca_is_replaced_with_its_server_certificate(tmp_path: Path) -> None:
    first = b.ensure_tls_material(tmp_path)
    expires = _cert(first.ca_cert).not_valid_after_utc
    later = b.ensure_tls_material(tmp_path, now=expires - dt.timedelta(days=1))
    assert later.ca_pem != first.ca_pem
    _cert(later.server_cert).verify_directly_issued_by(_cert(later.ca_cert))


@pytest.mark.parametrize("damage", ["garbage", "other_key", "missing"])
def test_broken_server_key_is_regenerated(tmp_path: Path, damage: str) -> None:
    first = b.ensure_tls_material(tmp_path)
    before = _snapshot(first)
    if damage == "garbage":
        first.server_key.write_bytes(b"not a key")
    elif damage == "other_key":
        first.server_key.write_bytes(b.ensure_tls_material(tmp_path / "x").server_key.read_bytes())
    else:
        first.server_key.unlink()
    again = b.ensure_tls_material(tmp_path)
    now = _snapshot(again)
    assert now["ca_cert"] == before["ca_cert"]
    assert now["server_cert"] != before["server_cert"]
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(again.server_cert, again.server_key)  # raises if key and cert disagree


def test_bad_ip_address_is_a_broker_error(tmp_path: Path) -> None:
    with pytest.raises(b.BrokerError, match="999"):
        b.ensure_tls_material(tmp_path, ip_addresses=["10.0.0.999"])


def test_rendered_config_has_three_listeners(tmp_path: Path) -> None:
    cfg = b.BrokerConfig(state_dir=tmp_path, port=1883, tls_port=8883, websockets_port=443)
    conf = b.render_mosquitto_conf(cfg)
    blocks = [block.splitlines() for block in conf.split("\n\n") if "listener " in block]
    assert blocks[0] == ["listener 1883 127.0.0.1", "protocol mqtt"]
    tls_lines = [
        f"certfile {tmp_path}/tls/server.pem",
        f"keyfile {tmp_path}/tls/server.key",
        "tls_version tlsv1.2",
    ]
    assert blocks[1] == ["listener 8883", "protocol mqtt", *tls_lines]
    assert blocks[2] == ["listener 443", "protocol websockets", *tls_lines]
    assert "per_listener_settings false" in conf
    assert f"message_size_limit {MAX_PAYLOAD_BYTES}" in conf
    assert f"max_packet_size {b.MAX_PACKET_BYTES}" in conf
    assert conf.count("plugin ") == 1


def test_no_tls_listeners_unless_asked(tmp_path: Path) -> None:
    conf = b.render_mosquitto_conf(b.BrokerConfig(state_dir=tmp_path, port=1883))
    assert "certfile" not in conf and conf.count("listener ") == 1


# --- a real broker ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    config: b.BrokerConfig
    tls: b.TlsMaterial
    admin: b.Credentials
    cloud: b.Credentials


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    state = tmp_path_factory.mktemp("broker")
    config = b.BrokerConfig(
        state_dir=state,
        port=b.free_port(),
        tls_port=b.free_port(),
        websockets_port=b.free_port(),
        tls_bind_address="127.0.0.1",
    )
    admin = b.Credentials("admin", b.new_password())
    cloud = b.Credentials("cloud", b.new_password())
    write_initial_dynsec(
        config.dynsec_path, admin, clients=[(cloud, [b.CLOUD_ROLE])], roles=[b.cloud_role()]
    )
    with b.MosquittoProcess(config) as process:
        assert process.tls is not None
        yield Broker(config, process.tls, admin, cloud)


@dataclass(frozen=True)
class Agent:
    branch_id: str
    agent_id: str
    creds: b.Credentials


@pytest.fixture
async def agent(tls_broker: Broker) -> AsyncIterator[Agent]:
    """A freshly provisioned agent with ids of its own."""
    branch_id, agent_id = f"br-{secrets.token_hex(3)}", f"ag-{secrets.token_hex(3)}"
    creds = b.Credentials(b.agent_username(branch_id, agent_id), b.new_password())
    async with b.DynSecAdmin("127.0.0.1", tls_broker.config.port, tls_broker.admin) as admin:
        await admin.create_role(b.agent_role(branch_id, agent_id))
        await admin.create_client(creds, [b.agent_role_name(branch_id, agent_id)])
    yield Agent(branch_id, agent_id, creds)


def _client(
    broker: Broker,
    creds: b.Credentials,
    transport: str,
    *,
    ca_pem: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 10,
) -> aiomqtt.Client:
    """A client on the ``plain``, ``tls`` or ``wss`` listener, trusting only ``ca_pem``."""
    cfg = broker.config
    kwargs: dict[str, Any] = {}
    if transport != "plain":
        kwargs["tls_context"] = ssl.create_default_context(cadata=ca_pem or broker.tls.ca_pem)
    if transport == "wss":
        kwargs |= {"transport": "websockets", "websocket_path": "/mqtt"}
    default_port = {"plain": cfg.port, "tls": cfg.tls_port, "wss": cfg.websockets_port}
    return make_client(
        host,
        port or default_port[transport],
        username=creds.username,
        password=creds.password,
        # socket options only: the WebSocket transport keeps Nagle until set_tcp_nodelay
        nodelay="socket_options",
        timeout=timeout,
        **kwargs,
    )


async def _next_payload(client: aiomqtt.Client) -> bytes:
    async with asyncio.timeout(10):
        message = await anext(client.messages)
    assert isinstance(message.payload, bytes)
    return message.payload


async def _request_reply(
    cloud: aiomqtt.Client, agent_client: aiomqtt.Client, agent: Agent, payload: bytes
) -> bytes:
    """Cloud (plain loopback) -> agent (listener under test) -> cloud; the reply payload."""
    req = request_topic(agent.branch_id, agent.agent_id)
    reply = reply_topic(agent.branch_id, "api-test", agent.agent_id)
    await cloud.publish(req, payload, qos=1)
    got = await _next_payload(agent_client)
    await agent_client.publish(reply, got[::-1], qos=1)
    return await _next_payload(cloud)


@pytest.mark.parametrize("transport", ["tls", "wss"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_round_trip_with_only_the_ca(
    tls_broker: Broker, agent: Agent, transport: str, host: str
) -> None:
    async with (
        _client(tls_broker, tls_broker.cloud, "plain") as cloud,
        _client(tls_broker, agent.creds, transport, host=host) as agent_client,
    ):
        await agent_client.subscribe(request_topic(agent.branch_id, agent.agent_id), qos=1)
        await cloud.subscribe(reply_topic(agent.branch_id, "api-test", agent.agent_id), qos=1)
        assert await _request_reply(cloud, agent_client, agent, b"ping-1") == b"1-gnip"
        # The largest payload the protocol allows crosses both listeners whole.
        big = secrets.token_bytes(MAX_PAYLOAD_BYTES)
        assert await _request_reply(cloud, agent_client, agent, big) == big[::-1]


@pytest.mark.parametrize("transport", ["tls", "wss"])
async def test_qos0_payload_over_the_limit_is_dropped(
    tls_broker: Broker, agent: Agent, transport: str
) -> None:
    req = request_topic(agent.branch_id, agent.agent_id)
    async with (
        _client(tls_broker, tls_broker.cloud, transport) as cloud,
        _client(tls_broker, agent.creds, transport) as agent_client,
    ):
        await agent_client.subscribe(req, qos=1)
        await cloud.publish(req, b"x" * (MAX_PAYLOAD_BYTES + 1), qos=0)
        await cloud.publish(req, b"marker", qos=1)
        assert await _next_payload(agent_client) == b"marker"


async def _expect_publisher_dropped(
    broker: Broker, agent: Agent, transport: str, payload: bytes, qos: int
) -> aiomqtt.MqttError:
    """Publish ``payload`` to the agent; the publisher must lose its connection and the agent
    must get nothing but a marker sent afterwards on a fresh connection."""
    req = request_topic(agent.branch_id, agent.agent_id)
    async with _client(broker, agent.creds, transport) as agent_client:
        await agent_client.subscribe(req, qos=1)
        with pytest.raises(aiomqtt.MqttError) as excinfo:
            async with _client(broker, broker.cloud, transport) as cloud:
                with contextlib.suppress(aiomqtt.MqttError):  # QoS 1: no usable PUBACK
                    await cloud.publish(req, payload, qos=qos, timeout=5)
                await _next_payload(cloud)  # raises once the connection is gone
        async with _client(broker, broker.cloud, transport) as cloud:
            await cloud.publish(req, b"marker", qos=1)
        assert await _next_payload(agent_client) == b"marker"
    return excinfo.value


@pytest.mark.parametrize("transport", ["tls", "wss"])
async def test_oversize_qos1_publish_costs_the_publisher_its_connection(
    tls_broker: Broker, agent: Agent, transport: str
) -> None:
    """A trap, not a wish: Mosquitto 2.0.11 answers a QoS 1 payload over
    ``message_size_limit`` with PUBACK reason 149 (Packet too large), a code MQTT 5 allows only
    in CONNACK/DISCONNECT; paho 2.2 calls the PUBACK malformed and drops the connection itself
    (reason 130). Publishers must refuse oversize payloads before they reach the broker. When
    this test fails, one of the two has changed and the check in the publisher can relax."""
    error = await _expect_publisher_dropped(
        tls_broker, agent, transport, b"x" * (MAX_PAYLOAD_BYTES + 1), qos=1
    )
    cause = error.__cause__
    assert isinstance(cause, aiomqtt.MqttCodeError) and cause.rc == 130  # Protocol error


async def test_packet_over_max_packet_size_disconnects_the_publisher(
    tls_broker: Broker, agent: Agent
) -> None:
    await _expect_publisher_dropped(tls_broker, agent, "tls", b"x" * b.MAX_PACKET_BYTES, qos=0)


async def test_websockets_listener_ignores_max_packet_size(
    tls_broker: Broker, agent: Agent
) -> None:
    """A trap, not a wish: Mosquitto 2.0.11 does not apply ``max_packet_size`` to WebSocket
    clients. The packet is read whole and only ``message_size_limit`` drops it; the publisher
    stays connected. When this fails, the broker enforces the limit on 443 too."""
    req = request_topic(agent.branch_id, agent.agent_id)
    async with (
        _client(tls_broker, tls_broker.cloud, "wss") as cloud,
        _client(tls_broker, agent.creds, "wss") as agent_client,
    ):
        await agent_client.subscribe(req, qos=1)
        await cloud.publish(req, b"x" * b.MAX_PACKET_BYTES, qos=0)
        await cloud.publish(req, b"marker", qos=1)  # would time out had we been disconnected
        assert await _next_payload(agent_client) == b"marker"


@pytest.mark.parametrize("transport", ["tls", "wss"])
async def test_client_trusting_another_ca_is_refused(
    tls_broker: Broker, agent: Agent, transport: str, tmp_path: Path
) -> None:
    other_ca = b.ensure_tls_material(tmp_path).ca_pem
    # paho does not close the socket whose handshake failed; reclaim it here, or its
    # ResourceWarning surfaces as an error in whichever test runs when it is collected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(aiomqtt.MqttError) as excinfo:
            async with _client(tls_broker, agent.creds, transport, ca_pem=other_ca):
                pytest.fail("connected although the server certificate is not from our CA")
        message = str(excinfo.value)
        del excinfo
        await asyncio.sleep(0.1)  # the executor future holding the socket is released on the loop
        gc.collect()
    assert "CERTIFICATE_VERIFY_FAILED" in message


async def test_hostname_not_in_the_certificate_is_refused(tls_broker: Broker, agent: Agent) -> None:
    # Same CA, but the name we dial is not in the certificate: verification must still fail.
    ctx = ssl.create_default_context(cadata=tls_broker.tls.ca_pem)
    with socket.create_connection(("127.0.0.1", tls_broker.config.tls_port or 0), timeout=5) as s:
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            ctx.wrap_socket(s, server_hostname="not-the-broker.example")


@pytest.mark.parametrize("transport", ["tls", "wss"])
async def test_plain_tcp_client_to_a_tls_port_fails(
    tls_broker: Broker, agent: Agent, transport: str
) -> None:
    cfg = tls_broker.config
    port = cfg.tls_port if transport == "tls" else cfg.websockets_port
    with pytest.raises(aiomqtt.MqttError):
        async with asyncio.timeout(30):
            async with _client(tls_broker, agent.creds, "plain", port=port, timeout=3):
                pytest.fail("a plain MQTT client got through to a TLS listener")


@pytest.mark.parametrize("transport", ["tls", "wss"])
async def test_wrong_password_over_tls_is_refused(
    tls_broker: Broker, agent: Agent, transport: str
) -> None:
    wrong = b.Credentials(agent.creds.username, b.new_password())
    with pytest.raises(aiomqtt.MqttCodeError) as excinfo:
        async with _client(tls_broker, wrong, transport):
            pytest.fail("connected with a wrong password")
    # Mosquitto 2.0.11's dynamic-security plugin answers a bad password with 135 (Not
    # authorized), not 134 (Bad user name or password).
    assert excinfo.value.rc == 135


def test_every_listener_binds_where_configured(tls_broker: Broker) -> None:
    """The WebSockets listener too (Mosquitto 2.0.11 bound it on every interface when given an
    address): nothing of this broker listens beyond loopback."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    cfg = tls_broker.config
    for port in (cfg.port, cfg.tls_port, cfg.websockets_port):
        local = [
            line.split()[3] for line in out.splitlines() if line.split()[3].endswith(f":{port}")
        ]
        assert local, f"nothing listens on {port}"
        for address in local:
            host = address.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:")
            assert host in ("127.0.0.1", "::1"), (port, local)
