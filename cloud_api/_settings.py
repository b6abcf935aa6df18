"""API settings: one TOML file (``printermaster api --config``), validated at start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from protocol import ProtocolError, validate_id


class BrokerAddress(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One broker of the deployment (``[[mqtt.brokers]]``); unset keys come from the section."""

    host: str
    port: int | None = None
    tls: bool | None = None
    ca_file: str | None = None


class MqttClientSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 1883
    #: Every broker of the deployment (independent brokers the agents fail over between);
    #: when set, ``host``/``port`` are not used. The API connects to each one; the same login
    #: must exist on each (provisioning creates agents on each through ``admin_mqtt``'s list).
    brokers: list[BrokerAddress] = []
    username: str
    password: str
    keepalive: int = 10
    #: Broker-side session lifetime (s): replies that arrive while the API restarts are kept.
    session_expiry: int = 300
    tls: bool = False
    ca_file: str | None = None

    def endpoints(self) -> list[MqttClientSettings]:
        """One settings per broker (``[self]`` without ``brokers``)."""
        if not self.brokers:
            return [self]
        return [
            msgspec.structs.replace(
                self,
                host=b.host,
                port=b.port if b.port is not None else self.port,
                tls=b.tls if b.tls is not None else self.tls,
                ca_file=b.ca_file or self.ca_file,
                brokers=[],
            )
            for b in self.brokers
        ]


class ProvisioningSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The broker as the branches see it, written into every agent config the API hands out.

    Unset fields fall back to the API's own ``[mqtt]`` section (right for a single-host setup).
    """

    host: str | None = None
    port: int | None = None
    transport: Literal["tcp", "websockets"] = "tcp"
    websocket_path: str = "/mqtt"
    tls: bool | None = None
    #: CA certificate (PEM file) the agent should trust; embedded into the config as ``ca_pem``.
    ca_file: str | None = None
    #: The broker's MQTT-over-TLS port as branches reach it (8883 in production); enables
    #: ``"transport": "tls"`` in a provisioning request.
    tls_port: int | None = None
    #: The broker's MQTT-over-WebSockets+TLS port (443 for networks that pass nothing else);
    #: enables ``"transport": "websockets"`` in a provisioning request.
    websockets_port: int | None = None
    #: Every broker as branches reach it, in the agents' order of preference (their
    #: ``[[mqtt.brokers]]``); a port left out is this section's. Unset: the API's own
    #: ``[mqtt]`` brokers when the branches reach them as the API does (plain TCP), else one.
    brokers: list[BrokerAddress] = []
    #: The agent's data directory; ``{branch_id}`` and ``{agent_id}`` are replaced.
    agent_data_dir: str = "/var/lib/printermaster"
    #: The same for agents provisioned with ``"platform": "windows"`` (or a ``win32`` printer).
    agent_data_dir_windows: str = "C:\\ProgramData\\printermaster\\data"
    keepalive: int = 10


class ApiSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: This instance's requester id: its reply topic is ``pm/v1/+/reply/{instance_id}``.
    instance_id: str = "api-1"
    #: API processes on this machine, sharing one listening socket (Unix). With more than one,
    #: worker *k* is its own instance ``{instance_id}.{k}`` (own reply topic and MQTT session).
    workers: int = 1
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    #: Bearer token with access to every branch (the operator's / demo's token).
    api_token: str
    mqtt: MqttClientSettings
    #: Admin login of the dynamic-security plugin: enables the provisioning routes.
    admin_mqtt: MqttClientSettings | None = None
    provisioning: ProvisioningSettings = ProvisioningSettings()
    #: The API-key JSON file of earlier versions: keys it holds that the store lacks are copied
    #: into the store at start (the keys live in the store, shared by every instance).
    api_keys_file: str | None = None
    #: Seconds to wait for the agent's ``accepted`` before answering AGENT_UNREACHABLE.
    accept_timeout: float = 3.0
    #: Seconds to wait for the final result after ``accepted`` before PRINT_TIMEOUT.
    result_timeout: float = 30.0
    #: Job store: ``sqlite:///abs/path.db`` (default: jobs.db in the working directory) or
    #: ``postgresql://user@host/db`` for several API instances.
    store_url: str = "sqlite://printermaster-jobs.db"
    #: Deadline of a job whose request names none (s).
    default_expire_after: float = 600.0
    #: Seconds between sweeps (deadlines, queued jobs of agents that came back).
    sweep_interval: float = 1.0
    #: A sent job not accepted after this long is published again while its agent is online
    #: (s); the agent's ledger makes the resend harmless.
    resend_after: float = 10.0
    #: A sent job not accepted this long after its deadline is expired (s).
    sent_grace: float = 5.0
    #: An accepted job with no result this long after its deadline is outcome_unknown (s).
    outcome_grace: float = 600.0
    #: Seconds an instance's lease lasts without renewal; once it passed, a surviving instance
    #: adopts the dead one's jobs and MQTT session (docs/operations.md).
    lease_ttl: float = 5.0
    #: Seconds between two renewals of the lease (and looks for dead instances).
    lease_renew: float = 1.0
    #: Largest HTTP request body accepted.
    max_body_bytes: int = 1024 * 1024
    #: Requests per second one API key may make on /v1 (token bucket, bursts up to
    #: ``rate_limit_key_burst``), per API process; 0 turns it off. The admin token is exempt.
    rate_limit_per_key: float = 50.0
    rate_limit_key_burst: int = 100
    #: Jobs and test prints per second for one printer, whoever sends them; 0 turns it off.
    #: A thermal printer prints a ticket or two a second: more is a runaway client.
    rate_limit_per_printer: float = 10.0
    rate_limit_printer_burst: int = 30
    #: Largest HTTP request head: the request line and every header together (bytes), and
    #: most header lines; larger heads are refused before they are read whole (431/400).
    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100
    #: MQTT messages per second one agent may send the API (token bucket, bursts up to
    #: ``mqtt_burst_per_agent``); beyond, they are dropped and counted; 0 turns it off.
    mqtt_rate_per_agent: float = 1000.0
    mqtt_burst_per_agent: int = 5000
    log_level: str = "INFO"
    #: Base64 Ed25519 public key of the release signers: a release whose signature does not
    #: verify is refused at ``POST /v1/releases`` (the agents check it again with their copy).
    release_public_key: str | None = None
    #: ``json`` (one JSON object per line), ``text`` (for people), or ``auto``: text when
    #: stderr is a terminal, JSON otherwise (docs/operations.md shows both).
    log_format: Literal["auto", "json", "text"] = "auto"
    #: Finished jobs older than this are deleted (s; default 30 days; 0 keeps them forever).
    #: Keep it longer than the 24 h idempotency window.
    job_retention_s: float = 30 * 86400.0
    #: Seconds between two retention rounds; and jobs deleted per batch within a round.
    retention_interval: float = 600.0
    retention_batch: int = 500


class SettingsError(Exception):
    """The API settings are invalid; the message names the key."""


def load_settings(path: str | Path) -> ApiSettings:
    path = Path(path)
    try:
        settings = msgspec.toml.decode(path.read_bytes(), type=ApiSettings)
        validate_id(settings.instance_id, "instance_id")
        if not 0 < settings.lease_renew < settings.lease_ttl:
            raise SettingsError(f"{path}: lease_renew must be > 0 and shorter than lease_ttl")
        if not 1 <= settings.workers <= 64:
            raise SettingsError(f"{path}: workers must be between 1 and 64, not {settings.workers}")
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from exc
    except (msgspec.DecodeError, ProtocolError) as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    return settings
