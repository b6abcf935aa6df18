"""The agent's configuration file as types: one TOML table per :class:`msgspec.Struct`.

Where the file lives (``--config`` overrides it):

* Linux and other POSIX systems: ``/etc/printermaster/agent.toml``. platformdirs would say
  ``/etc/xdg/printermaster``, which follows ``XDG_CONFIG_DIRS`` (a desktop-session variable a
  system service does not have) and is not where an administrator looks for a daemon's config.
* Windows: ``C:\\ProgramData\\printermaster\\agent.toml`` (platformdirs' ``site_config_dir``).

``data_dir`` defaults to platformdirs' ``site_state_dir``: ``/var/lib/printermaster`` on Linux
(systemd's ``StateDirectory=printermaster``), ``C:\\ProgramData\\printermaster\\data`` on Windows.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Final, Literal

import msgspec
import platformdirs

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
