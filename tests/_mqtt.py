"""The one MQTT test client: a paho MQTT 5 client that records exactly what the broker answers
(CONNACK, SUBACK, PUBACK and DISCONNECT reason codes) and every message it receives; ``Cloud``
on top of it plays the cloud over the wire; plus a raw-socket publisher for packets paho cannot
survive."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import Acl, Credentials, DynSecAdmin, Role
from mqtt_adapter import request_properties
from printermaster.stack import AgentHandle, Stack
from protocol import (
    new_job_id,
    reply_filter,
    reply_topic,
    request_topic,
    status_topic,
)

from ._wait import eventually

NOT_AUTHORIZED = 0x87  # SUBACK / PUBACK "Not authorized" (135)


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None
    at: float = field(default_factory=time.monotonic)
    user_properties: list[tuple[str, str]] = field(default_factory=list)
    properties: Properties | None = field(default=None, repr=False)


class Probe:
    """A paho MQTT 5 client; every call waits for the broker's answer and returns its code.

    ``will`` (topic, payload) is published retained at QoS 1 when the connection dies without
    DISCONNECT (see :meth:`crash`). With ``persistent`` the client keeps its session across a
    broker restart (clean start off, session expiry), reconnects quickly by itself and subscribes
    again, as the API's own client does; it then needs a ``client_id`` of its own.
    """

    def __init__(
        self,
        port: int,
        creds: Credentials | None,
        client_id: str = "",
        *,
        will: tuple[str, bytes] | None = None,
        persistent: bool = False,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or (creds.username if creds else ""),
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if creds is not None:
            self.client.username_pw_set(creds.username, creds.password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.port = port
        self.persistent = persistent
        self.messages: list[Received] = []
        self.connack: int | None = None
        self.disconnect_reason: int | None = None
        self.disconnected_at: float | None = None
        self._connected = threading.Event()
        self._gone = threading.Event()
        self._acks: dict[int, object] = {}
        self._subscriptions: dict[str, int] = {}
        self._lock = threading.Lock()
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = lambda _c, _u, mid, codes, _p: self._ack(mid, [x.value for x in codes])
        c.on_publish = lambda _c, _u, mid, code, _p: self._ack(mid, code.value)
        c.on_message = self._on_message
        if persistent:
            c.reconnect_delay_set(0.1, 0.5)

    def _on_connect(self, _c: object, _u: object, _f: object, code: object, _p: object) -> None:
        again = self._connected.is_set()
        self.connack = code.value  # type: ignore[attr-defined]
        self._connected.set()
        if again and self.persistent:  # a reconnect: subscribe again, as the API does
            self._gone.clear()
            for topic, qos in list(self._subscriptions.items()):
                self.client.subscribe(topic, qos=qos)

    def _on_disconnect(self, _c: object, _u: object, _f: object, code: object, _p: object) -> None:
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
            self.disconnect_reason = code.value  # type: ignore[attr-defined]
        self._gone.set()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        message = Received(
            msg.topic,
            msg.payload,
            msg.retain,
            getattr(props, "CorrelationData", None),
            user_properties=list(getattr(props, "UserProperty", [])),
            properties=props,
        )
        self.received(message)
        self.messages.append(message)

    def received(self, message: Received) -> None:
        """Called on paho's thread for every message before it joins :attr:`messages`."""

    def _ack(self, mid: int, value: object) -> None:
        with self._lock:
            self._acks[mid] = value

    def _wait_ack(self, mid: int, timeout: float = 5.0) -> object:
        def answered() -> tuple[object] | None:
            with self._lock:
                if mid in self._acks:
                    return (self._acks.pop(mid),)
            if self._gone.is_set():
                return (None,)
            return None

        try:
            (value,) = eventually(answered, timeout=timeout, interval=0.002)
        except AssertionError:
            raise TimeoutError(f"no ack for mid {mid}") from None
        return value

    def connect(self, timeout: float = 5.0) -> int:
        """CONNACK reason code (0 = accepted); a refused client does not retry."""
        props = None
        if self.persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 600
        self.client.connect(
            "127.0.0.1",
            self.port,
            keepalive=30,
            clean_start=not self.persistent,
            properties=props,
        )
        self.client.loop_start()
        if not self._connected.wait(timeout):
            raise TimeoutError("no CONNACK")
        assert self.connack is not None
        if self.connack != 0:
            self.client.loop_stop()
        return self.connack

    def subscribe(self, topic: str, qos: int = 1) -> int:
        """The SUBACK code for ``topic``: the granted QoS, or 0x87 when refused."""
        self._subscriptions[topic] = qos
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
        properties: Properties | None = None,
        wait: bool = True,
    ) -> int | None:
        """The PUBACK code of a QoS 1 publish (0 or 16 = accepted, 135 = not authorized);
        None without ``wait``, which returns once paho queued the packet."""
        props = properties or Properties(PacketTypes.PUBLISH)
        if correlation is not None:
            props.CorrelationData = correlation
        if response_topic is not None:
            props.ResponseTopic = response_topic
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=props)
        if not wait:
            return None
        code = self._wait_ack(info.mid)
        assert isinstance(code, int), code
        return code

    def wait_for(self, predicate: Callable[[Received], object], timeout: float = 5) -> Received:
        """The first received message ``predicate`` accepts, waiting up to ``timeout`` s."""

        def seen() -> Received | None:
            return next((m for m in list(self.messages) if predicate(m)), None)

        return eventually(seen, timeout=timeout, what="message")

    def wait_disconnect(self, timeout: float) -> bool:
        return self._gone.wait(timeout)

    def crash(self) -> None:
        """Drop the connection without DISCONNECT: the broker publishes our will."""
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Cloud(Probe):
    """Plays the cloud with the stack's ``debug`` login: sends agent requests, collects the
    replies by job id (and the agents' status, once :meth:`watch_status` asked for it)."""

    def __init__(self, stack: Stack, branch_id: str, *, persistent: bool = False) -> None:
        super().__init__(
            stack.mqtt_port,
            stack.creds("debug"),
            client_id=f"cloud-{new_job_id()}",
            persistent=persistent,
        )
        self.branch_id = branch_id
        self.replies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.status: list[dict[str, Any]] = []
        self._replies_lock = threading.Lock()
        assert self.connect() == 0
        assert self.subscribe(reply_filter("debug", branch_id)) == 1

    def received(self, message: Received) -> None:
        data = json.loads(message.payload)
        with self._replies_lock:
            if "/reply/" in message.topic:
                assert message.correlation is not None
                correlation = message.correlation.decode()
                assert data["job_id"] in (correlation, None)
                self.replies[correlation].append(data)
            else:
                self.status.append(data)

    def watch_status(self, agent: AgentHandle) -> None:
        self.subscribe(status_topic(agent.branch_id, agent.agent_id))

    def send(
        self,
        agent: AgentHandle,
        method: str,
        params: dict[str, Any],
        job_id: str | None = None,
        *,
        deadline: float | None = None,
        wait: bool = True,
    ) -> str:
        job_id = job_id or new_job_id()
        payload: dict[str, Any] = {"v": 1, "method": method, "params": params}
        if deadline is not None:
            payload["deadline"] = deadline
        props = request_properties(
            response_topic=reply_topic(agent.branch_id, "debug", agent.agent_id),
            correlation_id=job_id,
        )
        self.publish(
            request_topic(agent.branch_id, agent.agent_id),
            json.dumps(payload).encode(),
            properties=props,
            wait=wait,
        )
        return job_id

    def print_job(self, agent: AgentHandle, job_id: str | None = None, **kw: Any) -> str:
        content = kw.pop("content", RECEIPT)
        params = {"printer": "POS-80C", "content": content, "copies": kw.pop("copies", 1)}
        return self.send(agent, "print.job", params, job_id, **kw)

    def cancel(self, agent: AgentHandle, target: str) -> str:
        return self.send(agent, "job.cancel", {"job_id": target})

    def stages(self, job_id: str) -> list[str]:
        with self._replies_lock:
            return [r["stage"] for r in self.replies.get(job_id, [])]

    def statuses(self) -> list[dict[str, Any]]:
        with self._replies_lock:
            return list(self.status)

    def wait_for_stage(self, job_id: str, stage: str, timeout: float = 15) -> dict[str, Any]:
        return self._first(job_id, (stage,), timeout)

    def final(self, job_id: str, timeout: float = 15) -> dict[str, Any]:
        return self._first(job_id, ("done", "failed"), timeout)

    def _first(self, job_id: str, stages: tuple[str, ...], timeout: float) -> dict[str, Any]:
        def reply() -> dict[str, Any] | None:
            with self._replies_lock:
                found = [r for r in self.replies.get(job_id, []) if r["stage"] in stages]
            return found[0] if found else None

        return eventually(
            reply,
            timeout=timeout,
            interval=0.01,
            what=lambda: f"{stages} for {job_id}: {self.stages(job_id)}",
        )


#: A receipt as a point-of-sale system sends it.
RECEIPT: dict[str, Any] = {
    "type": "document",
    "width": 42,
    "blocks": [
        {"type": "text", "text": "Trattoria Roma", "align": "center", "bold": True, "width": 2},
        {"type": "separator"},
        {"type": "text", "text": "1 x Margherita                       9.50"},
        {"type": "qr", "data": "https://example.com/r/1042", "size": 4},
        {"type": "cut", "mode": "partial"},
    ],
}


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
