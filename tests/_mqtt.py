"""MQTT test clients that record exactly what the broker answers (CONNACK, SUBACK, PUBACK and
DISCONNECT reason codes), plus a raw-socket publisher for packets paho cannot survive."""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties

from broker import Acl, Credentials, DynSecAdmin, Role

NOT_AUTHORIZED = 0x87  # SUBACK / PUBACK "Not authorized" (135)


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None
    at: float = field(default_factory=time.monotonic)
    user_properties: list[tuple[str, str]] = field(default_factory=list)


class Probe:
    """A paho MQTT 5 client; every call waits for the broker's answer and returns its code."""

    def __init__(self, port: int, creds: Credentials | None, client_id: str = "") -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or (creds.username if creds else ""),
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if creds is not None:
            self.client.username_pw_set(creds.username, creds.password)
        self.port = port
        self.messages: list[Received] = []
        self.connack: int | None = None
        self.disconnect_reason: int | None = None
        self.disconnected_at: float | None = None
        self._connected = threading.Event()
        self._gone = threading.Event()
        self._acks: dict[int, object] = {}
        self._lock = threading.Lock()
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = lambda _c, _u, mid, codes, _p: self._ack(mid, [x.value for x in codes])
        c.on_publish = lambda _c, _u, mid, code, _p: self._ack(mid, code.value)
        c.on_message = self._on_message

    def _on_connect(self, _c: object, _u: object, _f: object, code: object, _p: object) -> None:
        self.connack = code.value  # type: ignore[attr-defined]
        self._connected.set()

    def _on_disconnect(self, _c: object, _u: object, _f: object, code: object, _p: object) -> None:
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
            self.disconnect_reason = code.value  # type: ignore[attr-defined]
        self._gone.set()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        self.messages.append(
            Received(
                msg.topic,
                msg.payload,
                msg.retain,
                getattr(props, "CorrelationData", None),
                user_properties=list(getattr(props, "UserProperty", [])),
            )
        )

    def _ack(self, mid: int, value: object) -> None:
        with self._lock:
            self._acks[mid] = value

    def _wait_ack(self, mid: int, timeout: float = 5.0) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if mid in self._acks:
                    return self._acks.pop(mid)
            if self._gone.is_set():
                return None
            time.sleep(0.002)
        raise TimeoutError(f"no ack for mid {mid}")

    def connect(self, timeout: float = 5.0) -> int:
        """CONNACK reason code (0 = accepted); a refused client does not retry."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            raise TimeoutError("no CONNACK")
        assert self.connack is not None
        if self.connack != 0:
            self.client.loop_stop()
        return self.connack

    def subscribe(self, topic: str, qos: int = 1) -> int:
        """The SUBACK code for ``topic``: the granted QoS, or 0x87 when refused."""
        _, mid = self.client.subscribe(topic, qos=qos)
        codes = self._wait_ack(mid)
        assert isinstance(codes, list), codes
        return int(codes[0])

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        correlation: bytes | None = None,
        response_topic: str | None = None,
        retain: bool = False,
    ) -> int:
        """The PUBACK code of a QoS 1 publish (0 or 16 = accepted, 135 = not authorized)."""
        props = Properties(mqtt.PacketTypes.PUBLISH)
        if correlation is not None:
            props.CorrelationData = correlation
        if response_topic is not None:
            props.ResponseTopic = response_topic
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=props)
        code = self._wait_ack(info.mid)
        assert isinstance(code, int), code
        return code

    def wait_disconnect(self, timeout: float) -> bool:
        return self._gone.wait(timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def create_observer(admin: DynSecAdmin, name: str) -> Credentials:
    """A test-only login that may read every non-``$`` topic (the admin role reads only
    ``$CONTROL``), to prove that a refused publish delivered nothing."""
    from broker import new_password

    role = Role(f"pm-test-{name}", (Acl("subscribePattern", "#"), Acl("publishClientReceive", "#")))
    await admin.create_role(role)
    creds = Credentials(f"test:{name}", new_password())
    await admin.create_client(creds, [role.name])
    return creds


async def delete_observer(admin: DynSecAdmin, name: str) -> None:
    await admin.delete_client(f"test:{name}")
    await admin.delete_role(f"pm-test-{name}")


# --- raw MQTT 5 ------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _varint(len(body)) + body


def _read_packet(sock: socket.socket) -> tuple[int, bytes]:
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return buf

    kind = exact(1)[0]
    length, shift = 0, 0
    while True:
        byte = exact(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return kind, exact(length)


def raw_publish_qos1(port: int, creds: Credentials, topic: str, payload: bytes) -> int:
    """CONNECT, one QoS 1 PUBLISH, and the PUBACK's reason code, over a bare socket.

    paho cannot report this one: Mosquitto 2.0 answers an oversized PUBLISH with PUBACK 0x95,
    a code MQTT 5 does not list for PUBACK, and paho drops the connection as a protocol error.
    """
    flags = 0x80 | 0x40 | 0x02  # username, password, clean start
    connect = (
        _str("MQTT")
        + bytes([5, flags])
        + struct.pack("!H", 30)
        + _varint(0)
        + _str(f"raw-{time.monotonic_ns()}")
        + _str(creds.username)
        + _str(creds.password)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(_packet(0x10, connect))
        kind, body = _read_packet(sock)
        assert kind == 0x20 and body[1] == 0, f"CONNACK refused: {body!r}"
        publish = _str(topic) + struct.pack("!H", 1) + _varint(0) + payload
        sock.sendall(_packet(0x32, publish))
        while True:
            kind, body = _read_packet(sock)
            if kind == 0x40:  # PUBACK: packet id, reason code (absent means success)
                return body[2] if len(body) > 2 else 0
