"""The stack: Mosquitto, the API and agents as processes under one state directory."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import tomli_w

from broker import (
    CLOUD_ROLE,
    DEBUG_ROLE,
    BrokerConfig,
    Credentials,
    DynSecAdmin,
    MosquittoProcess,
    Provisioner,
    agent_role,
    agent_username,
    cloud_role,
    debug_role,
    free_port,
    new_password,
    write_initial_dynsec,
)

from ._children import ChildProcess
from ._secrets import StackSecrets


@dataclass
class AgentHandle:
    branch_id: str
    agent_id: str
    config_path: Path
    data_dir: Path
    process: ChildProcess
    printers: list[str] = field(default_factory=list)

    def printer_dir(self, printer: str) -> Path:
        return self.data_dir / "virtual" / printer


@dataclass
class ApiHandle:
    instance_id: str
    url: str
    process: ChildProcess


class Stack:
    """Broker, API and agents under ``state_dir``; a context manager that stops them all."""

    def __init__(
        self,
        state_dir: Path,
        *,
        mqtt_port: int,
        http_port: int,
        api_overrides: dict[str, Any] | None = None,
        tls: bool = True,
        brokers: int = 1,
        debug_login: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.mqtt_port = mqtt_port
        self.http_port = http_port
        self.api_overrides = api_overrides or {}
        #: the test suite's own ``debug`` login for every branch (not bound to a client id);
        #: the demo has none and gets a login for its one branch (:meth:`branch_debug_creds`)
        self.debug_login = debug_login
        # Like production: a plain listener (loopback only), MQTT over TLS and MQTT over
        # WebSockets+TLS, with a CA of the stack's own that provisioned agents verify.
        self.tls_port = free_port() if tls else None
        self.websockets_port = free_port() if tls else None
        self.broker = MosquittoProcess(
            BrokerConfig(
                self.state_dir / "broker",
                mqtt_port,
                tls_port=self.tls_port,
                websockets_port=self.websockets_port,
                tls_bind_address="127.0.0.1",
            )
        )
        #: every broker of the stack: the first (with TLS listeners), then independent plain
        #: ones that agents fail over to (``brokers``); each holds every login
        self.brokers = [self.broker] + [
            MosquittoProcess(BrokerConfig(self.state_dir / f"broker-{n}", free_port()))
            for n in range(2, brokers + 1)
        ]
        self.api: ChildProcess | None = None
        #: API instances beyond the first (:meth:`add_api`)
        self.apis: list[ApiHandle] = []
        self.agents: dict[tuple[str, str], AgentHandle] = {}
        self.secrets = StackSecrets.load_or_create(self.state_dir / "secrets.json")

    # --- credentials -----------------------------------------------------------------------

    def creds(self, name: str) -> Credentials:
        return self.secrets.creds(name)

    @property
    def api_token(self) -> str:
        return self.secrets.api_token

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # --- broker ----------------------------------------------------------------------------

    def start_broker(self) -> None:
        for broker in self.brokers:
            cfg = broker.config
            cfg.state_dir.mkdir(parents=True, exist_ok=True)
            if not cfg.dynsec_path.exists():
                clients: list[Any] = [(self.creds("cloud"), [CLOUD_ROLE])]
                roles = [cloud_role()]
                if self.debug_login:
                    clients.append((self.creds("debug"), [DEBUG_ROLE]))
                    roles.append(debug_role())
                write_initial_dynsec(
                    cfg.dynsec_path, self.creds("admin"), clients=clients, roles=roles
                )
            broker.start()

    def admin(self, broker: MosquittoProcess | None = None) -> DynSecAdmin:
        port = (broker or self.broker).config.port
        return DynSecAdmin("127.0.0.1", port, self.creds("admin"))

    @property
    def broker_ports(self) -> list[int]:
        return [b.config.port for b in self.brokers]

    def branch_debug_creds(self, branch_id: str, name: str = "debug") -> Credentials:
        """A debug login for one branch (bound to its client id), made once and kept in
        ``secrets.json`` with the stack's other secrets."""
        key = f"debug:{branch_id}:{name}"
        if not self.secrets.has(key):

            async def add() -> Credentials:
                async with self.admin() as admin:
                    made = await Provisioner(admin).add_debug(branch_id, name)
                for broker in self.brokers[1:]:  # on every broker, with one password
                    async with self.admin(broker) as admin:
                        await Provisioner(admin).add_debug(branch_id, name, password=made.password)
                return made

            self.secrets.add(key, asyncio.run(add()))
        return self.creds(key)

    # --- agents ----------------------------------------------------------------------------

    async def provision_agent(self, branch_id: str, agent_id: str) -> Credentials:
        """Create the agent's broker client and role at run time (no broker restart), with
        its doctor's login, on every broker of the stack with one password, as the API's
        provisioning does."""
        async with self.admin() as admin:
            creds = await Provisioner(admin).add_agent(branch_id, agent_id)
        for broker in self.brokers[1:]:
            async with self.admin(broker) as admin:
                await Provisioner(admin).add_agent(branch_id, agent_id, password=creds.password)
        return creds

    async def provision_agents(self, ids: list[tuple[str, str]]) -> list[Credentials]:
        """Provision many agents in a few batched dynamic-security messages (on every
        broker, with the same password); without doctor's logins: the swarm's simulated
        agents never run ``agent doctor`` (:meth:`provision_agent` makes one)."""
        creds = [Credentials(agent_username(b, a), new_password()) for b, a in ids]
        for broker in self.brokers:
            async with self.admin(broker) as admin:
                await admin.create_agents(
                    ((agent_role(b, a), c) for (b, a), c in zip(ids, creds, strict=True)),
                    doctor=False,
                )
        return creds

    def agent_config(
        self,
        branch_id: str,
        agent_id: str,
        creds: Credentials,
        printers: list[str | dict[str, Any]],
        **extra: Any,
    ) -> dict[str, Any]:
        data_dir = self.state_dir / "agents" / f"{branch_id}.{agent_id}"
        config: dict[str, Any] = {
            "branch_id": branch_id,
            "agent_id": agent_id,
            "data_dir": str(data_dir),
            "heartbeat_interval": 30.0,
            "mqtt": {
                "host": "127.0.0.1",
                "port": self.mqtt_port,
                "username": creds.username,
                "password": creds.password,
                "keepalive": 10,
                **self._brokers_list(),
            },
            # a name is a virtual printer; a dict is any printer table (network, cups, ...)
            "printers": [
                {"kind": "virtual", "name": p} if isinstance(p, str) else p for p in printers
            ],
        }
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        return config

    def add_agent(
        self,
        branch_id: str,
        agent_id: str,
        printers: list[str | dict[str, Any]],
        *,
        start: bool = True,
        **extra: Any,
    ) -> AgentHandle:
        creds = asyncio.run(self.provision_agent(branch_id, agent_id))
        config = self.agent_config(branch_id, agent_id, creds, printers, **extra)
        path = self.state_dir / "agents" / f"{branch_id}.{agent_id}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(config, fh)
        process = ChildProcess(
            f"agent {branch_id}/{agent_id}",
            [sys.executable, "-m", "printermaster", "agent", "run", "--config", str(path)],
            path.with_suffix(".log"),
        )
        names = [p if isinstance(p, str) else str(p["name"]) for p in printers]
        handle = AgentHandle(branch_id, agent_id, path, Path(config["data_dir"]), process, names)
        self.agents[(branch_id, agent_id)] = handle
        if start:
            process.start()
        return handle

    # --- API -------------------------------------------------------------------------------

    def _brokers_list(self) -> dict[str, Any]:
        """``brokers = [...]`` of an MQTT settings table, with several brokers."""
        if len(self.brokers) == 1:
            return {}
        return {"brokers": [{"host": "127.0.0.1", "port": p} for p in self.broker_ports]}

    def api_settings(self) -> dict[str, Any]:
        cloud, admin = self.creds("cloud"), self.creds("admin")
        settings: dict[str, Any] = {
            "instance_id": "api-1",
            "http_host": "127.0.0.1",
            "http_port": self.http_port,
            "api_token": self.api_token,
            "store_url": f"sqlite://{self.state_dir / 'jobs.db'}",
            "mqtt": {
                "host": "127.0.0.1",
                "port": self.mqtt_port,
                "username": cloud.username,
                "password": cloud.password,
                **self._brokers_list(),
            },
            "admin_mqtt": {
                "host": "127.0.0.1",
                "port": self.mqtt_port,
                "username": admin.username,
                "password": admin.password,
                **self._brokers_list(),
            },
            "provisioning": {
                "agent_data_dir": str(self.state_dir / "agents" / "{branch_id}.{agent_id}"),
                **(
                    {
                        "tls_port": self.tls_port,
                        "websockets_port": self.websockets_port,
                        "ca_file": str(self.broker.config.tls_dir / "ca.pem"),
                    }
                    if self.tls_port
                    else {}
                ),
            },
            # virtual printers take hundreds of tickets a second (the suite, the benchmark and
            # the chaos run drive them so); real ones a ticket or two: no per-printer limit here
            "rate_limit_per_printer": 0.0,
        }
        settings.update(self.api_overrides)
        return settings

    def start_api(self, timeout: float = 20.0, *, ready: bool = True) -> None:
        """Start the API and wait until ``/readyz`` says ready (or, with ``ready`` False, until
        it serves at all: ``/healthz``, e.g. while the broker is down)."""
        self.api = self._start_api_process(
            "api", self.api_settings(), self.api_url, timeout, ready=ready
        )

    def add_api(self, instance_id: str, timeout: float = 20.0) -> ApiHandle:
        """Another API instance (its own process, port, instance id and MQTT session) on the
        same broker(s) and store as the first one: several instances sharing the work."""
        port = free_port()
        settings = {**self.api_settings(), "instance_id": instance_id, "http_port": port}
        url = f"http://127.0.0.1:{port}"
        handle = ApiHandle(
            instance_id, url, self._start_api_process(instance_id, settings, url, timeout)
        )
        self.apis.append(handle)
        return handle

    def _start_api_process(
        self, name: str, settings: dict[str, Any], url: str, timeout: float, *, ready: bool = True
    ) -> ChildProcess:
        probe = "/readyz" if ready else "/healthz"
        path = self.state_dir / f"{name}.toml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(settings, fh)
        process = ChildProcess(
            name,
            [sys.executable, "-m", "printermaster", "api", "--config", str(path)],
            self.state_dir / f"{name}.log",
        ).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.running():
            try:
                if httpx.get(f"{url}{probe}", timeout=2).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        state = "exited" if not process.running() else f"not ready after {timeout:.0f}s"
        tail = process.log_tail()
        process.stop()
        raise RuntimeError(f"API {state}:\n{tail}")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.api_token}"}, **kwargs
        )

    def wait_agent(
        self, branch_id: str, agent_id: str, *, online: bool = True, timeout: float = 15.0
    ) -> float:
        """Poll the API until the agent's presence is as wanted; returns the seconds it took."""
        start = time.monotonic()
        with self.client(timeout=5) as http:
            while True:
                agents = http.get(f"/v1/branches/{branch_id}/agents").json()
                state = any(a["agent_id"] == agent_id and a["online"] for a in agents)
                if state == online:
                    return time.monotonic() - start
                if time.monotonic() - start > timeout:
                    handle = self.agents.get((branch_id, agent_id))
                    tail = handle.process.log_tail() if handle else ""
                    raise TimeoutError(
                        f"agent {branch_id}/{agent_id} not {'online' if online else 'offline'} "
                        f"after {timeout:.0f}s\n{tail}"
                    )
                time.sleep(0.02)

    # --- whole stack -----------------------------------------------------------------------

    def stop(self) -> None:
        for handle in self.agents.values():
            handle.process.stop()
        for extra in self.apis:
            extra.process.stop()
        if self.api is not None:
            self.api.stop()
        for broker in self.brokers:
            broker.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
