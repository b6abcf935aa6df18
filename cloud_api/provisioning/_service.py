"""Provisioning: agent and per-branch debug logins created, rotated and revoked through the
broker's dynamic-security plugin by the cloud's admin MQTT client (no broker restart).

Each operation opens its own short admin session: provisioning is rare, so a fresh session
needs no reconnect logic, holds no idle admin connection and always sees the broker as it is.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

import aiomqtt
import msgspec

from agent_config import ConfigError, PrinterConfig
from broker import (
    AlreadyProvisioned,
    BrokerError,
    Credentials,
    DynSecAdmin,
    NotProvisioned,
    Provisioner,
    debug_send_username,
)
from protocol import TOPIC_PREFIX, ErrorCode, ProtocolError, reply_filter

from .._errors import ApiError
from .._owners import OwnerBook
from .._settings import ApiSettings
from ._render import AgentPlatform, BrokerEndpoint, Transport, agent_platform, render_agent_config


class DebugLogin(msgspec.Struct, kw_only=True, frozen=True):
    branch_id: str
    username: str
    password: str
    broker_url: str
    #: The response topic of a request to agent A: ``{agent_id}`` replaced by A (each agent may
    #: answer only on its own reply topics).
    reply_topic: str
    #: Subscribe here for the replies of every agent of the branch.
    reply_filter: str
    #: Every login connects under its username as client id only (the broker refuses any
    #: other): ``username`` listens, its twin ``send_username`` (same password) sends.
    send_username: str


class ProvisioningService:
    def __init__(self, settings: ApiSettings, owners: OwnerBook | None = None) -> None:
        self.settings = settings
        #: who owns which printer (set once the store is open)
        self.owners = owners

    @contextlib.asynccontextmanager
    async def _provisioner(self) -> AsyncIterator[list[Provisioner]]:
        """One provisioner per broker of the deployment (``admin_mqtt``'s list): every change
        is made on each, with the same password, the first broker first."""
        settings = self.settings.admin_mqtt
        if settings is None:
            raise ApiError(
                ErrorCode.BROKER_UNAVAILABLE,
                "provisioning is not configured: add an [admin_mqtt] section to the API settings",
            )
        try:
            async with contextlib.AsyncExitStack() as stack:
                provisioners = []
                for admin in settings.endpoints():
                    tls = ssl.create_default_context(cafile=admin.ca_file) if admin.tls else None
                    session = await stack.enter_async_context(
                        DynSecAdmin(
                            admin.host,
                            admin.port,
                            Credentials(admin.username, admin.password),
                            tls_context=tls,
                        )
                    )
                    provisioners.append(Provisioner(session))
                yield provisioners
        except AlreadyProvisioned as exc:
            raise ApiError(ErrorCode.CONFLICT, str(exc)) from exc
        except NotProvisioned as exc:
            raise ApiError(ErrorCode.NOT_FOUND, str(exc)) from exc
        except ProtocolError as exc:
            raise ApiError(ErrorCode.INVALID_REQUEST, exc.message) from exc
        except (BrokerError, aiomqtt.MqttError) as exc:
            raise ApiError(ErrorCode.BROKER_UNAVAILABLE, f"provisioning failed: {exc}") from exc

    def _config(
        self,
        branch_id: str,
        agent_id: str,
        creds: Credentials,
        printers: list[PrinterConfig] | None,
        transport: Transport | None = None,
        platform: AgentPlatform | None = None,
    ) -> str:
        prov = self.settings.provisioning
        try:
            return render_agent_config(
                branch_id=branch_id,
                agent_id=agent_id,
                creds=creds,
                broker=BrokerEndpoint.from_settings(self.settings, transport),
                data_dir=prov.agent_data_dir,
                printers=printers,
                platform=agent_platform(platform, printers),
                windows_data_dir=prov.agent_data_dir_windows,
            )
        except ConfigError as exc:
            raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc
        except OSError as exc:
            raise ApiError(ErrorCode.INTERNAL, f"cannot read the CA file: {exc}") from exc

    async def add_agent(
        self,
        branch_id: str,
        agent_id: str,
        printers: list[PrinterConfig] | None = None,
        transport: Transport | None = None,
        platform: AgentPlatform | None = None,
    ) -> str:
        """Create the agent's login and role; returns its one-time config (TOML)."""
        # Render once with a placeholder first: a bad printer table or transport fails before
        # the broker is touched.
        self._config(
            branch_id, agent_id, Credentials("check", "check"), printers, transport, platform
        )
        # The printers first: a name another agent of the branch owns is refused (409) before
        # the broker is touched.
        await self._own(branch_id, agent_id, printers)
        try:
            async with self._provisioner() as (first, *others):
                creds = await first.add_agent(branch_id, agent_id)
                for prov in others:
                    try:
                        await prov.add_agent(branch_id, agent_id, password=creds.password)
                    except AlreadyProvisioned:
                        # left over from a change that failed half-way: same password as the
                        # first broker's
                        await prov.rotate_agent(branch_id, agent_id, password=creds.password)
        except ApiError as exc:
            if exc.code is not ErrorCode.CONFLICT and self.owners is not None:
                await self.owners.release(branch_id, agent_id)  # no such agent after all
            raise
        return self._config(branch_id, agent_id, creds, printers, transport, platform)

    async def _own(
        self, branch_id: str, agent_id: str, printers: list[PrinterConfig] | None
    ) -> None:
        if self.owners is not None and printers:
            await self.owners.provision(branch_id, agent_id, [p.name for p in printers])

    async def rotate_agent(
        self,
        branch_id: str,
        agent_id: str,
        printers: list[PrinterConfig] | None = None,
        platform: AgentPlatform | None = None,
    ) -> str:
        """New password (the broker drops the agent's live session); returns the new config."""
        await self._own(branch_id, agent_id, printers)
        async with self._provisioner() as (first, *others):
            creds = await first.rotate_agent(branch_id, agent_id)
            for prov in others:
                await prov.rotate_agent(branch_id, agent_id, password=creds.password)
        return self._config(branch_id, agent_id, creds, printers, platform=platform)

    async def revoke_agent(self, branch_id: str, agent_id: str) -> None:
        """Revoke on every broker; NOT_FOUND only when no broker had the login (a login made on
        some brokers only, by a change that failed half-way, is removed where it is). The
        agent's printers are free for others afterwards."""
        try:
            async with self._provisioner() as provisioners:
                missing = 0
                for prov in provisioners:
                    try:
                        await prov.revoke_agent(branch_id, agent_id)
                    except NotProvisioned:
                        missing += 1
                if missing == len(provisioners):
                    raise NotProvisioned(f"no agent {agent_id!r} in branch {branch_id!r}")
        finally:
            if self.owners is not None:
                await self.owners.release(branch_id, agent_id)

    async def add_debug(self, branch_id: str, name: str) -> DebugLogin:
        async with self._provisioner() as (first, *others):
            creds = await first.add_debug(branch_id, name)
            for prov in others:
                await prov.add_debug(branch_id, name, password=creds.password)
        return DebugLogin(
            branch_id=branch_id,
            username=creds.username,
            password=creds.password,
            broker_url=BrokerEndpoint.from_settings(self.settings).url,
            reply_topic=f"{TOPIC_PREFIX}/{branch_id}/reply/debug/{{agent_id}}",
            reply_filter=reply_filter("debug", branch_id),
            send_username=debug_send_username(creds.username),
        )

    async def revoke_debug(self, branch_id: str, name: str) -> None:
        async with self._provisioner() as provisioners:
            for prov in provisioners:
                await prov.revoke_debug(branch_id, name)
