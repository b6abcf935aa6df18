"""The agent configuration provisioning hands out: TOML that ``branch_agent.load_config`` reads
as it is, with the broker address as the branches see it and the CA certificate inline."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from agent_config import (
    AgentConfig,
    BrokerAddress,
    ConfigError,
    MqttSettings,
    PrinterConfig,
    Win32PrinterConfig,
    dump_config,
    parse_config,
)
from broker import Credentials

from .._settings import ApiSettings

Transport = Literal["tcp", "tls", "websockets"]
#: Where the agent runs: its data directory and config location differ.
AgentPlatform = Literal["linux", "windows"]

#: The Windows agent's defaults (platformdirs' site dirs; see docs/install-agent.md).
WINDOWS_DATA_DIR = "C:\\ProgramData\\printermaster\\data"
CONFIG_PATHS: dict[str, str] = {
    "linux": "/etc/printermaster/agent.toml",
    "windows": "C:\\ProgramData\\printermaster\\agent.toml",
}


def agent_platform(
    requested: AgentPlatform | None, printers: list[PrinterConfig] | None
) -> AgentPlatform:
    """The platform asked for; else Windows when a printer is a spooler (``win32``) printer."""
    if requested is not None:
        return requested
    if any(isinstance(p, Win32PrinterConfig) for p in printers or []):
        return "windows"
    return "linux"


@dataclass(frozen=True)
class BrokerEndpoint:
    """Where and how an agent reaches the broker."""

    host: str
    port: int
    transport: str = "tcp"
    websocket_path: str = "/mqtt"
    tls: bool = False
    ca_pem: str | None = None
    keepalive: int = 10
    #: Every broker (host, port) in order of preference, when there are several.
    brokers: tuple[tuple[str, int], ...] = ()

    @property
    def url(self) -> str:
        if self.transport == "websockets":
            scheme = "wss" if self.tls else "ws"
            return f"{scheme}://{self.host}:{self.port}{self.websocket_path}"
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @classmethod
    def from_settings(
        cls, settings: ApiSettings, transport: Transport | None = None
    ) -> BrokerEndpoint:
        """``[provisioning]`` with the API's own ``[mqtt]`` as fallback; reads the CA file now,
        so a renewed CA is handed out without an API restart.

        ``transport`` picks one of the broker's listeners: ``tcp`` (the default endpoint),
        ``tls`` (MQTT over TLS) or ``websockets`` (MQTT over WebSockets+TLS, for branch networks
        that pass only port 443). Raises :class:`ConfigError` for a listener not configured.

        Outside loopback the default is TLS: the TLS listener when one is configured, else TLS
        on the configured port. Only ``tls = false`` in ``[provisioning]`` hands out a plaintext
        config for a remote broker (passwords and tickets would cross the network in clear)."""
        prov, mqtt = settings.provisioning, settings.mqtt
        host = prov.host or mqtt.host
        if transport is None and prov.tls is None and not is_loopback(host):
            if prov.tls_port is not None:
                transport = "tls"
            else:
                prov = msgspec.structs.replace(prov, tls=True)
        tls = prov.tls if prov.tls is not None else mqtt.tls
        ca_file = prov.ca_file or (mqtt.ca_file if prov.tls is None else None)
        port, kind = prov.port or mqtt.port, prov.transport
        if transport in ("tls", "websockets"):
            chosen = prov.tls_port if transport == "tls" else prov.websockets_port
            if chosen is None:
                raise ConfigError(
                    f"transport {transport!r}: the API has no {transport} listener "
                    f"configured ([provisioning] {transport}_port)"
                )
            port, tls, kind = chosen, True, "websockets" if transport == "websockets" else "tcp"
            ca_file = prov.ca_file or mqtt.ca_file
        brokers: tuple[tuple[str, int], ...] = ()
        if prov.brokers:
            brokers = tuple((b.host, b.port or port) for b in prov.brokers)
        elif mqtt.brokers and not (prov.host or prov.port) and transport in (None, "tcp"):
            brokers = tuple((b.host, b.port or mqtt.port) for b in mqtt.brokers)
        return cls(
            host=brokers[0][0] if brokers else host,
            port=brokers[0][1] if brokers else port,
            brokers=brokers,
            transport=kind,
            websocket_path=prov.websocket_path,
            tls=tls,
            ca_pem=Path(ca_file).read_text() if tls and ca_file else None,
            keepalive=prov.keepalive,
        )


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (plaintext MQTT is fine only there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def render_agent_config(
    *,
    branch_id: str,
    agent_id: str,
    creds: Credentials,
    broker: BrokerEndpoint,
    data_dir: str,
    printers: list[PrinterConfig] | None = None,
    platform: AgentPlatform = "linux",
    windows_data_dir: str = WINDOWS_DATA_DIR,
) -> str:
    """TOML for one agent; checked with the agent's own parser before it leaves.

    ``data_dir`` is the template for Linux agents, ``windows_data_dir`` the one for Windows
    agents (``{branch_id}`` and ``{agent_id}`` are replaced in both)."""
    template = windows_data_dir if platform == "windows" else data_dir
    config = AgentConfig(
        branch_id=branch_id,
        agent_id=agent_id,
        # ids are from the safe set (no "/", no ".."), so they are safe in a path
        data_dir=template.replace("{branch_id}", branch_id).replace("{agent_id}", agent_id),
        mqtt=MqttSettings(
            host=broker.host,
            port=broker.port,
            username=creds.username,
            password=creds.password,
            transport=broker.transport,  # type: ignore[arg-type]
            websocket_path=broker.websocket_path,
            tls=broker.tls,
            ca_pem=broker.ca_pem,
            keepalive=broker.keepalive,
            brokers=[BrokerAddress(host=host, port=port) for host, port in broker.brokers],
        ),
        printers=list(printers or []),
    )
    more = f" and {len(broker.brokers) - 1} more, in order" if broker.brokers else ""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = (
        f"# PrinterMaster agent {agent_id} of branch {branch_id}, provisioned {stamp}.\n"
        f"# Broker: {broker.url}{more}\n"
        f"# For a {platform.capitalize()} agent: save it as {CONFIG_PATHS[platform]}\n"
        "# Holds this agent's broker password: keep the file private (see docs/install-agent.md).\n"
        f"# Run: printermaster agent run --config {CONFIG_PATHS[platform]}\n\n"
    ) + dump_config(config)
    parse_config(text, "generated config")  # raises ConfigError if we ever emit a bad one
    return text


__all__ = [
    "WINDOWS_DATA_DIR",
    "AgentPlatform",
    "BrokerEndpoint",
    "ConfigError",
    "Transport",
    "agent_platform",
    "render_agent_config",
]
