"""Remote printer configuration, the cloud's side (docs/remote-config.md).

``PUT /v1/branches/{b}/agents/{a}/printers`` checks the list with the agent's own schema (the
printer tables of its TOML config), stores it with a new version and publishes it retained on
the agent's ``config`` topic. The agent applies it without a restart and answers in its status:
``config_version`` (in use) or ``config_error`` (the version it refused, and why). ``GET`` shows
both sides: what the cloud wants and what the agent runs.

Versions only grow, across API restarts and store changes too: a new one is
``max(previous + 1, now in milliseconds)``, so an agent never mistakes a new configuration for
one it already has.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import msgspec

from agent_config import ConfigError, parse_printers
from protocol import (
    MAX_PAYLOAD_BYTES,
    ConfigRejection,
    ErrorCode,
    PrintersConfig,
    config_topic,
    encode,
    validate_id,
)

from .._errors import ApiError
from .._registry import Registry
from .._retained import publish_retained
from .._settings import ApiSettings
from ..store import Store

SCHEMA: Final = [
    """CREATE TABLE IF NOT EXISTS agent_printer_configs (
        branch_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        printers TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (branch_id, agent_id)
    )"""
]

_UPSERT: Final = """INSERT INTO agent_printer_configs (branch_id, agent_id, version, printers,
    updated_at) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (branch_id, agent_id) DO UPDATE SET version = excluded.version,
        printers = excluded.printers, updated_at = excluded.updated_at
    WHERE agent_printer_configs.version < excluded.version"""
_SELECT: Final = """SELECT version, printers, updated_at FROM agent_printer_configs
    WHERE branch_id = ? AND agent_id = ?"""


class PrintersBody(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The agent's printers: the printer tables of its TOML config, as JSON objects."""

    printers: list[dict[str, Any]]


class AgentPrintersView(msgspec.Struct, kw_only=True, frozen=True):
    branch_id: str
    agent_id: str
    #: The configuration the cloud wants (0 and the agent's own list when none was set).
    version: int
    printers: list[dict[str, Any]]
    updated_at: float | None
    #: The version the agent runs (from its status; 0: its local TOML; None: never heard of).
    applied_version: int | None
    #: True once the agent runs ``version``.
    applied: bool
    #: True when the agent uses the printers of its own TOML (never set here, or handed back).
    local: bool
    #: The newest version the agent refused and why (it keeps ``applied_version``).
    agent_error: ConfigRejection | None
    agent_online: bool


def check_printers(printers: list[dict[str, Any]]) -> bytes:
    """The list as JSON, checked with the agent's schema; 422 naming the bad key otherwise."""
    raw = msgspec.json.encode(printers)
    try:
        parse_printers(raw, "$.printers")
    except ConfigError as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc
    return raw


class PrinterConfigService:
    def __init__(self, store: Store, settings: ApiSettings, registry: Registry) -> None:
        self._store = store
        self._settings = settings
        self._registry = registry
        self._schema_ready = False
        self._lock = asyncio.Lock()

    async def _schema(self) -> None:
        if not self._schema_ready:
            for statement in SCHEMA:
                await self._store._execute(statement, ())
            self._schema_ready = True

    async def _stored(self, branch_id: str, agent_id: str) -> tuple[int, bytes, float] | None:
        await self._schema()
        rows = await self._store._fetch(_SELECT, (branch_id, agent_id))
        if not rows:
            return None
        version, printers, updated_at = rows[0]
        text = printers if isinstance(printers, str) else bytes(printers).decode()
        return int(version), text.encode(), float(updated_at)

    async def put(
        self, branch_id: str, agent_id: str, printers: list[dict[str, Any]]
    ) -> AgentPrintersView:
        _check_ids(branch_id, agent_id)
        raw = check_printers(printers)
        if len(raw) > MAX_PAYLOAD_BYTES - 1024:  # the message around it stays under the limit
            raise ApiError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"{len(raw)} bytes of printers: more than an MQTT message carries here",
            )
        await self._store_and_publish(branch_id, agent_id, raw)
        return await self.get(branch_id, agent_id)

    async def _store_and_publish(self, branch_id: str, agent_id: str, raw: bytes) -> None:
        async with self._lock:  # one version at a time from this instance
            stored = await self._stored(branch_id, agent_id)
            version = max((stored[0] + 1) if stored else 1, time.time_ns() // 1_000_000)
            now = time.time()
            await self._store._execute(_UPSERT, (branch_id, agent_id, version, raw.decode(), now))
            message = PrintersConfig(version=version, printers=msgspec.Raw(raw), at=now)
            await publish_retained(
                self._settings.mqtt,
                self._settings.instance_id,
                config_topic(branch_id, agent_id),
                encode(message),
            )

    async def clear(self, branch_id: str, agent_id: str) -> AgentPrintersView:
        """Hand the agent's printers back to its TOML, as a new version (``printers: null``):
        retained like any other, so an agent offline now gets it when it comes back."""
        _check_ids(branch_id, agent_id)
        await self._store_and_publish(branch_id, agent_id, b"null")
        return await self.get(branch_id, agent_id)

    async def get(self, branch_id: str, agent_id: str) -> AgentPrintersView:
        _check_ids(branch_id, agent_id)
        stored = await self._stored(branch_id, agent_id)
        record = self._registry.agent(branch_id, agent_id)
        if stored is None and record is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"agent {branch_id}/{agent_id} not found")
        status = record.status if record else None
        applied = status.config_version if status else None
        version, updated_at = (stored[0], stored[2]) if stored else (0, None)
        printers = msgspec.json.decode(stored[1]) if stored else None
        local = printers is None
        if printers is None:
            # The agent's own printers (its TOML), as far as its status says.
            printers = [{"name": p.name, "kind": p.kind} for p in status.printers] if status else []
        error = status.config_error if status else None
        return AgentPrintersView(
            branch_id=branch_id,
            agent_id=agent_id,
            version=version,
            printers=printers,
            updated_at=updated_at,
            applied_version=applied,
            applied=applied == version,
            local=local,
            agent_error=error if error is not None and error.version >= (applied or 0) else None,
            agent_online=record.online() if record else False,
        )


def _check_ids(branch_id: str, agent_id: str) -> None:
    try:
        validate_id(branch_id, "branch id")
        validate_id(agent_id, "agent id")
    except Exception as exc:
        raise ApiError(
            ErrorCode.NOT_FOUND, f"agent {branch_id[:64]}/{agent_id[:64]} not found"
        ) from exc
