"""The doctor's network steps, each on its own socket: DNS, TCP, and (``tls = true``) the TLS
handshake with the certificate checked against the configured CA, each failure with its fix."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time

from agent_config import AgentConfig
from mqtt_adapter import client_tls_context

from ._doctor_step import Step, fail, ok


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
    return client_tls_context(config.mqtt.ca_file, config.mqtt.ca_pem)


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
