"""The doctor's MQTT steps, through a short paho session of its own: the login (CONNACK reason
code in words), the ACL (SUBACK of the agent's request topic) and a round trip through the
broker on the agent's probe topic.

The doctor logs in as the agent but with a client id of its own (``<username>:doctor``), a clean
start and no session expiry: a running agent keeps its session and its queued requests.
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

from agent_config import AgentConfig
from mqtt_adapter import make_paho_client
from protocol import probe_topic, request_topic

from ._doctor_step import Step, fail, ok

_NEW_CREDENTIALS = (
    "get a fresh config for this agent: rotate its credentials in the cloud (or "
    "`printermaster broker provision rotate --branch B --agent A`), or provision it again if "
    "it was revoked; save the config here and run the doctor again"
)

_CONNACK = {
    0x84: (
        "the broker does not speak MQTT 5",
        "point mqtt.host/port at the PrinterMaster broker (MQTT 5)",
    ),
    0x85: ("client identifier not valid", "the broker restricts client ids; ask the operator"),
    0x86: ("wrong username or password", _NEW_CREDENTIALS),
    # Mosquitto 2.0 with dynamic security answers a wrong password, an unknown user and a
    # disabled (revoked) client all with 0x87; the doctor cannot tell them apart.
    0x87: (
        "not authorized: wrong username or password, or the login was revoked or disabled",
        _NEW_CREDENTIALS,
    ),
    0x88: ("server unavailable", "the broker is starting or overloaded: try again in a minute"),
    0x89: ("server busy", "the broker is overloaded: try again in a minute"),
    0x8A: ("banned", "the broker operator has banned this client"),
    0x9F: ("connection rate exceeded", "wait a minute; something reconnects in a loop"),
}


class _Session:
    """A short paho session: every callback lands in one queue the steps read from."""

    def __init__(self, config: AgentConfig, timeout: float, username: str) -> None:
        self.timeout = timeout
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._kept: list[tuple[str, Any]] = []
        settings = config.mqtt
        client = make_paho_client(
            client_id=doctor_login(settings.username),
            username=username,
            password=settings.password,
            tls=settings.tls,
            ca_file=settings.ca_file,
            ca_pem=settings.ca_pem,
            transport=settings.transport,
            websocket_path=settings.websocket_path,
            connect_timeout=timeout,
        )
        client.on_connect = lambda _c, _u, _f, rc, _p: self.events.put(("connack", rc))
        client.on_subscribe = lambda _c, _u, mid, rcs, _p: self.events.put(("suback", (mid, rcs)))
        client.on_publish = lambda _c, _u, mid, rc, _p: self.events.put(("puback", (mid, rc)))
        client.on_message = lambda _c, _u, msg: self.events.put(("message", msg))
        client.on_disconnect = lambda _c, _u, _f, rc, _p: self.events.put(("disconnect", rc))
        self.client = client

    def wait(self, kind: str, match: Callable[[Any], bool] = lambda _: True) -> Any:
        """The next event of ``kind`` matching; None after the timeout or a disconnect.

        Events of other kinds are kept for later waits: the broker may deliver our probe before
        it sends the PUBACK of its publish.
        """
        for i, (got, value) in enumerate(self._kept):
            if got == kind and match(value):
                del self._kept[i]
                return value
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, value = self.events.get(timeout=left)
            except queue.Empty:
                return None
            if got == kind and match(value):
                return value
            if got == "disconnect" and kind != "connack":
                return None
            self._kept.append((got, value))
        return None

    def subscribe(self, topic: str) -> int | None:
        """The SUBACK reason code for ``topic`` at QoS 1, or None without an answer."""
        _, mid = self.client.subscribe(topic, qos=1)
        answer = self.wait("suback", lambda v: v[0] == mid)
        return None if answer is None else int(answer[1][0].value)


def doctor_login(username: str) -> str:
    """The doctor's own login and client id beside the agent's (provisioned with the agent,
    same password and role): every login is bound to its client id, and the doctor must not
    take the running agent's."""
    return f"{username}:doctor"


def _login(config: AgentConfig, timeout: float, username: str) -> tuple[_Session, Any]:
    """Connect as ``username`` (client id: the doctor's); the session and its CONNACK code
    (None without one). Raises what connecting raises."""
    settings = config.mqtt
    session = _Session(config, timeout, username)
    session.client.connect(settings.host, settings.port, keepalive=30, clean_start=True)
    session.client.loop_start()
    return session, session.wait("connack")


@contextlib.contextmanager
def connected(config: AgentConfig, timeout: float) -> Iterator[tuple[_Session | None, Step]]:
    name = "MQTT login"
    settings = config.mqtt
    try:
        session, rc = _login(config, timeout, doctor_login(settings.username))
        if rc is not None and rc.value in (0x86, 0x87):
            # A broker provisioned by an older release has no doctor login: the agent's own
            # login, under the doctor's client id, tells the same about password and role.
            session.client.loop_stop()
            session, rc = _login(config, timeout, settings.username)
    except (OSError, ssl.SSLError, ValueError) as exc:
        yield None, fail(name, f"connecting failed: {exc}", "see the TCP and TLS steps")
        return
    try:
        if rc is None:
            yield (
                None,
                fail(
                    name,
                    f"no CONNACK within {timeout:g} s",
                    "the port answers but not as an MQTT broker: check mqtt.port and "
                    "mqtt.transport (websockets needs the WebSocket listener and websocket_path)",
                ),
            )
        elif rc.value == 0:
            yield session, ok(name, f"logged in as {settings.username}")
            with contextlib.suppress(Exception):
                session.client.disconnect()
        else:
            code = int(rc.value)
            problem, fix = _CONNACK.get(code, (str(rc), "see the broker's log"))
            yield (
                None,
                fail(
                    name, f"the broker refused {settings.username}: {problem} (0x{code:02X})", fix
                ),
            )
    finally:
        session.client.loop_stop()


def check_acl(session: _Session, config: AgentConfig) -> Step:
    topic = request_topic(config.branch_id, config.agent_id)
    code = session.subscribe(topic)
    if code is None:
        return fail("ACL", f"no SUBACK for {topic}", "the broker dropped the connection")
    if code > 2:
        return fail(
            "ACL",
            f"the broker refused a subscription to {topic} (SUBACK 0x{code:02X})",
            "this login's role does not cover its own request topic: are branch_id and "
            "agent_id the ones it was provisioned for? Otherwise provision it again",
        )
    with contextlib.suppress(Exception):
        session.client.unsubscribe(topic)
    return ok("ACL", f"may subscribe to its request topic {topic} (granted QoS {code})")


def check_round_trip(session: _Session, config: AgentConfig) -> Step:
    name = "round trip"
    topic = probe_topic(config.branch_id, config.agent_id)
    request = request_topic(config.branch_id, config.agent_id)
    reprovision = (
        "this agent's broker role predates the probe topic: provision the agent again, or "
        f"change its role: subscribePattern and publishClientReceive on {request}/# (instead of "
        f"{request}) and publishClientSend on {topic}"
    )
    code = session.subscribe(topic)
    if code is None or code > 2:
        shown = "no SUBACK" if code is None else f"SUBACK 0x{code:02X}"
        return fail(name, f"may not subscribe to {topic} ({shown})", reprovision)
    nonce = secrets.token_hex(8)
    started = time.perf_counter()
    info = session.client.publish(topic, f'{{"probe":"{nonce}"}}'.encode(), qos=1, retain=False)
    puback = session.wait("puback", lambda v: v[0] == info.mid)
    if puback is not None and int(puback[1].value) >= 0x80:
        rc = int(puback[1].value)
        return fail(
            name, f"the broker refused the probe on {topic} (PUBACK 0x{rc:02X})", reprovision
        )
    got = session.wait("message", lambda m: m.topic == topic and nonce.encode() in m.payload)
    if got is None:
        return fail(
            name,
            f"the probe did not come back within {session.timeout:g} s",
            "the broker accepted the probe but did not deliver it: see the broker's log "
            "(queue limits, ACL on publishClientReceive)",
        )
    ms = (time.perf_counter() - started) * 1000
    with contextlib.suppress(Exception):
        session.client.unsubscribe(topic)
    return ok(name, f"a probe on {topic} came back through the broker in {ms:.1f} ms")
