"""Agent configuration: one TOML file, validated at start with errors that name the key.

Where the file lives (``--config`` overrides it):

* Linux and other POSIX systems: ``/etc/printermaster/agent.toml``. platformdirs would say
  ``/etc/xdg/printermaster``, which follows ``XDG_CONFIG_DIRS`` (a desktop-session variable a
  system service does not have) and is not where an administrator looks for a daemon's config.
* Windows: ``C:\\ProgramData\\printermaster\\agent.toml`` (platformdirs' ``site_config_dir``).

``data_dir`` defaults to platformdirs' ``site_state_dir``: ``/var/lib/printermaster`` on Linux
(systemd's ``StateDirectory=printermaster``), ``C:\\ProgramData\\printermaster\\data`` on Windows.

Environment overrides: ``PRINTERMASTER_<KEY>``, with ``__`` between nested keys, e.g.
``PRINTERMASTER_BRANCH_ID``, ``PRINTERMASTER_MQTT__PASSWORD``, ``PRINTERMASTER_MQTT__PORT=8883``.
The value is read as the key's type (``true``/``false``, numbers). Lists (``printers``) cannot be
set this way; an unknown ``PRINTERMASTER_*`` name is an error, so a typo never goes unnoticed.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import platformdirs

from protocol import ProtocolError, validate_id

from ._errors import ConfigError
from ._printers import PrinterConfig


class BrokerAddress(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One broker of an ordered list (``[[mqtt.brokers]]``); unset keys come from ``[mqtt]``."""

    host: str
    port: int | None = None
    transport: Literal["tcp", "websockets"] | None = None
    websocket_path: str | None = None
    tls: bool | None = None


class MqttSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 1883
    #: Brokers in order of preference; when set, ``host``/``port`` are not used. The agent
    #: connects to the first one it reaches, moves to the next at once when its broker is lost,
    #: and returns to the first when that answers again (checked every ``failback_interval``).
    brokers: list[BrokerAddress] = []
    #: Seconds between checks, while on another broker, that the first one is back.
    failback_interval: float = 30.0
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

    def endpoints(self) -> list[MqttSettings]:
        """One settings per broker, most preferred first (``[self]`` without ``brokers``)."""
        if not self.brokers:
            return [self]
        return [
            msgspec.structs.replace(
                self,
                host=b.host,
                port=b.port if b.port is not None else self.port,
                transport=b.transport or self.transport,
                websocket_path=b.websocket_path or self.websocket_path,
                tls=b.tls if b.tls is not None else self.tls,
                brokers=[],
            )
            for b in self.brokers
        ]


class DiscoverySettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Printers the agent offers to the cloud without having them configured."""

    #: List the queues of the CUPS server (needs the ``cups`` extra; off where pycups is missing).
    cups: bool = True
    #: ``host[:port]`` or a socket path; default: libcups' (``CUPS_SERVER``, the local socket).
    cups_server: str | None = None
    #: Seconds between two listings (the status snapshot carries the last one).
    interval: float = 60.0
    #: List USB printers (printer-class devices, receipt printer makers); needs the ``usb``
    #: extra and libusb, off by itself where they are missing.
    usb: bool = True
    #: Probe port ``network_port`` on every host of ``network_subnets`` (default: the
    #: machine's own IPv4 subnets, at most a /24 each). Off unless the shop's owner wants it.
    network: bool = False
    network_subnets: list[str] = []
    network_port: int = 9100
    #: Seconds to wait for each host's connection.
    network_timeout: float = 0.5
    #: Subnets with more addresses than this are refused rather than scanned.
    network_max_hosts: int = 1024


class UpdateSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Signed auto-update (docs/updates.md); the agent must run under ``agent supervise``."""

    #: The release channel followed (``stable``, ``beta``, ...).
    channel: str = "stable"
    #: Base64 raw Ed25519 public key releases must be signed with.
    public_key: str
    #: HTTPS base URL the artifacts are downloaded from (``{base_url}/{artifact}``).
    base_url: str
    #: CA file to verify ``base_url`` with (default: the system's CAs).
    ca_file: str | None = None
    #: Install root of the side-by-side versions (what ``agent supervise --root`` names).
    root: str
    #: Seconds a new version has to come online before the supervisor rolls it back.
    online_timeout: float = 120.0


class AgentConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    branch_id: str
    agent_id: str
    #: Ledger, outbox and virtual printers live here (default: :func:`default_data_dir`).
    data_dir: str
    mqtt: MqttSettings
    printers: list[PrinterConfig] = []
    discovery: DiscoverySettings = DiscoverySettings()
    update: UpdateSettings | None = None
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
    #: Serve Prometheus metrics on ``http://127.0.0.1:{metrics_port}/metrics`` (loopback only;
    #: off when unset).
    metrics_port: int | None = None

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


APP_NAME: Final = "printermaster"
ENV_PREFIX: Final = "PRINTERMASTER_"


def default_config_path() -> Path:
    """Where the agent looks for its config when ``--config`` is not given."""
    if sys.platform == "win32" or sys.platform == "darwin":
        return Path(platformdirs.site_config_dir(APP_NAME, appauthor=False)) / "agent.toml"
    return Path("/etc") / APP_NAME / "agent.toml"


def default_data_dir() -> Path:
    """``data_dir`` when the config leaves it out (platformdirs' ``site_state_dir``)."""
    state = Path(platformdirs.site_state_dir(APP_NAME, appauthor=False))
    # On Windows the state dir is the config dir; keep the config file apart from the data.
    return state / "data" if state == default_config_path().parent else state


def _env_overrides(env: Mapping[str, str]) -> list[tuple[str, list[str], str]]:
    """``(variable, key path, value)`` for every ``PRINTERMASTER_*`` variable, sorted."""
    found = []
    for name, value in env.items():
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and len(upper) > len(ENV_PREFIX):
            path = upper[len(ENV_PREFIX) :].lower().split("__")
            found.append((name, path, value))
    return sorted(found)


def _apply_env(raw: dict[str, Any], env: Mapping[str, str], source: str) -> None:
    """Set each override in ``raw``, converted to the type of the key it names."""
    for name, path, value in _env_overrides(env):
        struct: Any = AgentConfig
        target = raw
        for depth, key in enumerate(path):
            fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
            dotted = ".".join(path[: depth + 1])
            if key not in fields:
                raise ConfigError(f"{name}: no setting {dotted!r} (from the environment)")
            field_type = fields[key].type
            last = depth == len(path) - 1
            is_struct = isinstance(field_type, type) and issubclass(field_type, msgspec.Struct)
            if last and is_struct:
                raise ConfigError(f"{name}: {dotted!r} is a table; set its keys, e.g. {name}__KEY")
            if last:
                if key == "printers":
                    raise ConfigError(f"{name}: printers cannot be set from the environment")
                try:
                    target[key] = msgspec.convert(value, field_type, strict=False)
                except msgspec.ValidationError as exc:
                    raise ConfigError(f"{name}: {dotted}: {exc}") from exc
            elif not is_struct:
                raise ConfigError(f"{name}: {dotted!r} has no keys below it")
            else:
                nested = target.setdefault(key, {})
                if not isinstance(nested, dict):
                    raise ConfigError(f"{source}: {dotted}: expected a table")
                struct, target = field_type, nested


def parse_config(
    data: bytes | str, source: str = "config", *, env: Mapping[str, str] | None = None
) -> AgentConfig:
    """Decode and validate a TOML config; raises :class:`ConfigError` naming the bad key.

    ``env`` (e.g. ``os.environ``) may override keys, see the module docstring; a missing
    ``data_dir`` becomes :func:`default_data_dir`.
    """
    try:
        raw = msgspec.toml.decode(data)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    if env is not None:
        _apply_env(raw, env, source)
    raw.setdefault("data_dir", str(default_data_dir()))
    try:
        config = msgspec.convert(raw, AgentConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
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
    if config.update is not None:
        try:
            validate_id(config.update.channel, "update.channel")
        except ProtocolError as exc:
            raise ConfigError(f"{source}: {exc.message}") from exc
        if not config.update.base_url.startswith("https://"):
            raise ConfigError(f"{source}: update.base_url must start with https://")
        from ._update import load_public_key

        try:
            load_public_key(config.update.public_key)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    for i, endpoint in enumerate(config.mqtt.endpoints()):
        where = f"mqtt.brokers[{i}].port" if config.mqtt.brokers else "mqtt.port"
        if not 1 <= endpoint.port <= 65535:
            raise ConfigError(f"{source}: {where} must be 1-65535, got {endpoint.port}")
    if not config.mqtt.failback_interval > 0:
        raise ConfigError(f"{source}: mqtt.failback_interval must be > 0")
    return config


def load_config(
    path: str | Path | None = None, *, env: Mapping[str, str] | None = os.environ
) -> AgentConfig:
    """Read the config at ``path`` (default :func:`default_config_path`), with ``env`` overrides."""
    path = Path(path) if path is not None else default_config_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no config at {path}: provision the agent in the cloud and save its TOML there, "
            "or pass --config"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    return parse_config(data, str(path), env=env)


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
