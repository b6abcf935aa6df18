"""Agent configuration: one TOML file, validated at start with errors that name the key."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import msgspec

from protocol import ProtocolError, validate_id

from ._errors import ConfigError
from ._printers import PrinterConfig


class MqttSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 1883
    username: str
    password: str
    transport: Literal["tcp", "websockets"] = "tcp"
    websocket_path: str = "/mqtt"
    #: Verify the broker with TLS; ``ca_file`` or ``ca_pem`` names the CA (system CAs otherwise).
    tls: bool = False
    ca_file: str | None = None
    ca_pem: str | None = None
    #: Seconds; the broker declares the agent dead after 1.5 x keepalive of silence.
    keepalive: int = 10
    #: Broker-side session lifetime in seconds, so requests survive a short disconnect.
    session_expiry: int = 3600


class AgentConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    branch_id: str
    agent_id: str
    #: Ledger, outbox and virtual printers live here.
    data_dir: str
    mqtt: MqttSettings
    printers: list[PrinterConfig] = []
    #: Seconds between status heartbeats (a change is published at once, whatever this says).
    heartbeat_interval: float = 30.0
    #: Seconds a status stays valid (its Message Expiry Interval); default 3 heartbeats. The
    #: cloud counts the agent offline once it passes without a new heartbeat.
    status_expiry: float | None = None
    #: Seconds between printer status polls (changes are published at once).
    status_poll_interval: float = 0.5
    #: Seconds a change waits before its snapshot goes out, so bursts publish once.
    status_debounce: float = 0.2
    #: SQLite ``synchronous`` of the job ledger: ``full`` fsyncs every commit (survives power
    #: loss); ``normal`` only survives a crash of the agent process (simulations, benchmarks).
    ledger_sync: Literal["full", "normal"] = "full"
    #: Seconds an ended job stays in the ledger (longer than the cloud's 24 h idempotency window).
    ledger_retention_s: float = 48 * 3600.0

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def heartbeat_expiry(self) -> int:
        """Whole seconds (MQTT's unit), rounded up so the status never lapses early."""
        expiry = (
            self.status_expiry if self.status_expiry is not None else self.heartbeat_interval * 3
        )
        return max(1, math.ceil(expiry))


def parse_config(data: bytes | str, source: str = "config") -> AgentConfig:
    """Decode and validate a TOML config; raises :class:`ConfigError` naming the bad key."""
    try:
        config = msgspec.toml.decode(data, type=AgentConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        validate_id(config.branch_id, "branch_id")
        validate_id(config.agent_id, "agent_id")
        names = [validate_id(p.name, f"printers[{i}].name") for i, p in enumerate(config.printers)]
    except ProtocolError as exc:
        raise ConfigError(f"{source}: {exc.message}") from exc
    if config.heartbeat_interval <= 0 or config.status_poll_interval <= 0:
        raise ConfigError(f"{source}: heartbeat_interval and status_poll_interval must be > 0")
    if config.heartbeat_expiry <= config.heartbeat_interval:
        raise ConfigError(
            f"{source}: status_expiry ({config.heartbeat_expiry} s) must be longer than "
            f"heartbeat_interval ({config.heartbeat_interval:g} s), or the agent flaps offline"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: printers: names must be unique, got {names}")
    return config


def load_config(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    return parse_config(data, str(path))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def dump_config(config: AgentConfig) -> str:
    """TOML text of ``config`` (what provisioning hands to a new agent).

    TOML has no null: unset optional keys are left out, which reads back as the same default.
    """
    import tomli_w

    data = _without_none(msgspec.to_builtins(config))
    return tomli_w.dumps(data, multiline_strings=True)
