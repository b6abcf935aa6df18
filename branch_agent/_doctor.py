"""``printermaster agent doctor``: every link from the config file to the paper, one by one.

Steps, each with one verdict line (``OK``, ``FAIL`` plus the fix to try, or ``SKIP``)::

    config       the file parses, ids are valid
    data dir     exists and is writable (or can be created)
    DNS          the broker host resolves
    TCP          the broker port accepts a connection
    TLS          (tls = true) handshake, certificate verified against the configured CA
    MQTT login   CONNECT with the agent's credentials; the CONNACK reason code, in words
    ACL          SUBSCRIBE to the agent's request topic is granted
    round trip   a probe published on the agent's probe topic comes back through the broker
    printer X    each configured printer's status

A step that needs an earlier one which failed is skipped. The exit code is 0 only when no step
failed. No secret is printed: the password never appears, not even masked.

The doctor logs in as the agent but with a client id of its own (``<username>:doctor``), a clean
start and no session expiry: a running agent keeps its session and its queued requests. The round
trip uses the agent's probe topic (``.../req/probe``), the only topic its role lets it both write
and read, and one nobody else reads. The request topic itself cannot serve: an agent may not
publish requests (a stolen agent login could otherwise print on the branch's printers), and a
running agent would act on them. Presence and status are read by the cloud, and the agent may not
read them back.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import queue
import secrets
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import msgspec

from protocol import ErrorCode, probe_topic, request_topic

from ._checks import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, check_printer, describe_reading
from ._config import AgentConfig, default_config_path, load_config
from ._errors import ConfigError
from ._printers import (
    CupsPrinterConfig,
    FilePrinterConfig,
    NetworkPrinterConfig,
    PrinterConfig,
    PrinterReading,
    SerialPrinterConfig,
    UsbPrinterConfig,
    Win32PrinterConfig,
)

Verdict = Literal["OK", "FAIL", "SKIP"]


@dataclass(frozen=True)
class Step:
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        head = f"[{self.verdict}]".ljust(7) + f"{self.name}: {self.detail}"
        return [head, f"       fix: {self.fix}"] if self.fix else [head]


def ok(name: str, detail: str) -> Step:
    return Step(name, "OK", detail)


def fail(name: str, detail: str, fix: str) -> Step:
    return Step(name, "FAIL", detail, fix)


def skip(name: str, detail: str) -> Step:
    return Step(name, "SKIP", detail)


# --- network steps -------------------------------------------------------------------------


def check_dns(host: str, port: int) -> tuple[Step, list[str]]:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return ok("DNS", f"{host} is an address, nothing to resolve"), [host]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return fail(
            "DNS",
            f"cannot resolve {host!r}: {reason}",
            "check mqtt.host for typos, then this machine's DNS "
            "(Linux: resolvectl query HOST; Windows: nslookup HOST)",
        ), []
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return ok("DNS", f"{host} -> {', '.join(addresses)}"), addresses


def check_tcp(host: str, port: int, timeout: float) -> Step:
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        return fail(
            "TCP",
            f"{host}:{port} refused the connection (nothing listens there)",
            "is the broker running? is mqtt.port right (1883 plain MQTT, 8883 TLS, "
            "443 WebSockets)?",
        )
    except TimeoutError:
        return fail(
            "TCP",
            f"no answer from {host}:{port} within {timeout:g} s",
            f"a firewall drops the traffic: allow outbound TCP to {host} port {port}",
        )
    except OSError as exc:
        return fail(
            "TCP",
            f"cannot connect to {host}:{port}: {exc.strerror or exc}",
            "check this machine's network connection and routes to the broker",
        )
    ms = (time.perf_counter() - started) * 1000
    return ok("TCP", f"connected to {host}:{port} in {ms:.0f} ms")


def tls_context(config: AgentConfig) -> ssl.SSLContext:
    """The context the agent uses (system CAs unless ``ca_file``/``ca_pem`` name one)."""
    return ssl.create_default_context(cafile=config.mqtt.ca_file, cadata=config.mqtt.ca_pem)


_VERIFY_FIXES = {
    # OpenSSL X509_V_ERR_* codes
    9: ("the broker's certificate is not valid yet", "check this machine's date and time"),
    10: (
        "the broker's certificate has expired",
        "renew the broker's certificate (and check this machine's date and time)",
    ),
    18: (
        "the broker's certificate is self-signed and not the configured CA",
        "set mqtt.ca_file (or ca_pem) to the CA that signed the broker's certificate",
    ),
    19: (
        "the broker's certificate chain ends in a CA that is not trusted",
        "set mqtt.ca_file (or ca_pem) to the CA that signed the broker's certificate",
    ),
    20: (
        "the broker's certificate is not signed by the configured CA",
        "set mqtt.ca_file (or ca_pem) to the CA that signed the broker's certificate",
    ),
    21: (
        "the broker's certificate is not signed by the configured CA",
        "set mqtt.ca_file (or ca_pem) to the CA that signed the broker's certificate",
    ),
    62: (
        "the broker's certificate does not name this host",
        "set mqtt.host to a name the certificate holds, or reissue it with this name",
    ),
}


def check_tls(config: AgentConfig, timeout: float) -> Step:
    host, port = config.mqtt.host, config.mqtt.port
    ca = (
        f"CA {config.mqtt.ca_file}"
        if config.mqtt.ca_file
        else ("CA from ca_pem" if config.mqtt.ca_pem else "system CAs")
    )
    try:
        context = tls_context(config)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return fail(
            "TLS",
            f"cannot load the CA ({ca}): {getattr(exc, 'strerror', None) or exc}",
            "mqtt.ca_file must be a readable PEM file (ca_pem: PEM text) of the broker's CA",
        )
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            cert = tls.getpeercert() or {}
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        problem, fix = _VERIFY_FIXES.get(
            exc.verify_code, ("certificate verification failed", "check the broker certificate")
        )
        return fail("TLS", f"{problem} ({exc.verify_message}; checked against {ca})", fix)
    except (ssl.SSLError, ConnectionResetError, TimeoutError) as exc:
        return fail(
            "TLS",
            f"no TLS handshake with {host}:{port}: {exc}",
            "this port does not speak TLS: use the broker's TLS port (usually 8883), "
            "or tls = false for a plain port",
        )
    except OSError as exc:
        return fail("TLS", f"connection failed: {exc}", "see the TCP step")
    detail = f"{version}, certificate verified for {host} against {ca}"
    not_after = cert.get("notAfter")
    if isinstance(not_after, str):
        expires = ssl.cert_time_to_seconds(not_after)
        days = (expires - time.time()) / 86400
        detail += f", expires {time.strftime('%Y-%m-%d', time.gmtime(expires))} ({days:.0f} days)"
        if days < 14:
            return fail("TLS", detail, "renew the broker's certificate before it expires")
    return ok("TLS", detail)


# --- MQTT steps ----------------------------------------------------------------------------

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
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.timeout = timeout
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._kept: list[tuple[str, Any]] = []
        settings = config.mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=doctor_login(settings.username),
            protocol=mqtt.MQTTv5,
            transport=settings.transport,
            reconnect_on_failure=False,
        )
        client.username_pw_set(username, settings.password)
        if settings.tls:
            client.tls_set_context(tls_context(config))
        if settings.transport == "websockets":
            client.ws_set_options(path=settings.websocket_path)
        client.connect_timeout = timeout
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
def _connected(config: AgentConfig, timeout: float) -> Iterator[tuple[_Session | None, Step]]:
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


# --- local steps ---------------------------------------------------------------------------


def check_data_dir(config: AgentConfig) -> Step:
    path = config.data_path
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    fix = (
        "create it and give it to the user the agent runs as (the systemd unit's "
        "StateDirectory= does this), or set data_dir"
    )
    if existing is None or not existing.is_dir():
        return fail("data dir", f"{path} cannot be created", fix)
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path else f"cannot be created in {existing}"
        return fail("data dir", f"{path} {what} by this user", fix)
    return ok("data dir", f"{path} " + ("is writable" if existing == path else "will be created"))


def _printer_fix(printer: PrinterConfig, code: ErrorCode) -> str:
    if code is ErrorCode.PAPER_OUT:
        return "load paper"
    if code is ErrorCode.COVER_OPEN:
        return "close the printer's cover"
    match printer:
        case NetworkPrinterConfig():
            return (
                f"is the printer on, cabled, and at {printer.host}:{printer.port}? "
                "(a printer without DLE EOT needs status_query = false)"
            )
        case CupsPrinterConfig():
            return f"`lpstat -p {printer.queue}`; `cupsenable {printer.queue}` if it is stopped"
        case UsbPrinterConfig():
            return "is it plugged in (lsusb)? the agent's user needs access (udev rule, group lp)"
        case SerialPrinterConfig():
            return f"check the cable and {printer.device}; the agent's user needs group dialout"
        case FilePrinterConfig():
            return f"does {printer.device} exist? the agent's user needs group lp"
        case Win32PrinterConfig():
            return "check the printer under Windows Settings > Printers & scanners"
    return "see the detail above"


def check_printers(config: AgentConfig) -> list[Step]:
    steps = []
    for printer in config.printers:
        check = check_printer(config, printer)
        kind = type(printer).__struct_config__.tag
        name = f"printer {printer.name} ({kind} {check.target})"
        problem = check.problem
        if problem is None:
            steps.append(ok(name, describe_reading(check.reading or PrinterReading())))
        else:
            shown = describe_reading(check.reading) if check.reading else problem.message
            steps.append(
                fail(name, f"{problem.code}: {shown}", _printer_fix(printer, problem.code))
            )
    return steps


# --- the whole run -------------------------------------------------------------------------


def run_doctor(
    config_path: str | Path | None, *, timeout: float = 5.0, report: Callable[[Step], None]
) -> tuple[AgentConfig | None, list[Step]]:
    """Run every step, calling ``report`` as each ends; returns the config and the steps."""
    steps: list[Step] = []

    def add(step: Step) -> None:
        steps.append(step)
        report(step)

    path = Path(config_path) if config_path else default_config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        add(fail("config", str(exc), "fix the named key (docs/install-agent.md has an example)"))
        return None, steps
    add(
        ok(
            "config",
            f"{path}: branch {config.branch_id}, agent {config.agent_id}, "
            f"{len(config.printers)} printer(s), broker {config.mqtt.host}:{config.mqtt.port}"
            f" ({'TLS' if config.mqtt.tls else 'plain'}, {config.mqtt.transport})",
        )
    )
    add(check_data_dir(config))
    endpoints = config.mqtt.endpoints()
    for n, endpoint in enumerate(endpoints, 1):
        if len(endpoints) > 1:  # every broker of the list: the agent may need any of them
            add(ok("broker", f"{endpoint.host}:{endpoint.port} ({n} of {len(endpoints)})"))
        for step in _network_steps(msgspec.structs.replace(config, mqtt=endpoint), timeout):
            add(step)
    for step in check_printers(config):
        add(step)
    return config, steps


def _network_steps(config: AgentConfig, timeout: float) -> Iterator[Step]:
    host, port = config.mqtt.host, config.mqtt.port
    later = ["TCP", "TLS", "MQTT login", "ACL", "round trip"]
    dns, _ = check_dns(host, port)
    yield dns
    if dns.verdict == "FAIL":
        yield from (skip(name, "needs DNS") for name in later)
        return
    tcp = check_tcp(host, port, timeout)
    yield tcp
    if tcp.verdict == "FAIL":
        yield from (skip(name, "needs TCP") for name in later[1:])
        return
    if config.mqtt.tls:
        tls = check_tls(config, timeout)
        yield tls
        if tls.verdict == "FAIL":
            yield from (skip(name, "needs TLS") for name in later[2:])
            return
    else:
        loopback = host in ("localhost",) or _is_loopback(host)
        note = "" if loopback else "; the password crosses the network unencrypted"
        yield skip("TLS", f"tls = false{note}")
    with _connected(config, timeout) as (session, login):
        yield login
        if session is None:
            yield from (skip(name, "needs MQTT login") for name in later[3:])
            return
        yield check_acl(session, config)
        yield check_round_trip(session, config)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def doctor_command(
    config_path: str | None, *, timeout: float = 5.0, out: TextIO | None = None
) -> int:
    out = out or sys.stdout

    def report(step: Step) -> None:
        for line in step.lines():
            print(line, file=out, flush=True)

    config, steps = run_doctor(config_path, timeout=timeout, report=report)
    failed = [s.name for s in steps if s.verdict == "FAIL"]
    if not failed:
        print(f"All checks passed ({len(steps)} steps).", file=out)
        return EXIT_OK
    print(f"{len(failed)} check(s) failed: {', '.join(failed)}.", file=out)
    return EXIT_CONFIG if config is None else EXIT_FAILED
