"""Which agent owns which printer: the ``printers`` table, in the job store's database (SQLite or
PostgreSQL) but apart from the jobs.

A row is written when provisioning names an agent's printers (``provisioned``) and when an agent
provisioned otherwise first reports a printer nobody owns; it goes when the agent is revoked or
stops reporting a printer it was not provisioned with. Every instance reads the table at start,
so the registry of printers survives a restart, and a restart while the broker is away.
"""

from __future__ import annotations

import time
from typing import Final, NamedTuple

from ._base import Store

_SCHEMA: Final = """CREATE TABLE IF NOT EXISTS printers (
    branch_id TEXT NOT NULL,
    printer_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    provisioned INTEGER NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (branch_id, printer_id)
)"""


class PrinterRow(NamedTuple):
    branch_id: str
    printer_id: str
    agent_id: str
    provisioned: bool
    updated_at: float


class PrinterTable:
    """The ``printers`` table of ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self) -> None:
        try:
            await self.store._execute(_SCHEMA, [])
        except Exception as exc:
            # two PostgreSQL instances creating it at once: the loser finds it made
            if "already exists" not in str(exc) and "unique" not in str(exc).lower():
                raise

    async def all(self) -> list[PrinterRow]:
        rows = await self.store._fetch(
            "SELECT branch_id, printer_id, agent_id, provisioned, updated_at FROM printers", []
        )
        return [PrinterRow(r[0], r[1], r[2], bool(r[3]), float(r[4])) for r in rows]

    async def owner(self, branch_id: str, printer_id: str) -> str | None:
        rows = await self.store._fetch(
            "SELECT agent_id FROM printers WHERE branch_id = ? AND printer_id = ?",
            [branch_id, printer_id],
        )
        return str(rows[0][0]) if rows else None

    async def learn(self, branch_id: str, printer_id: str, agent_id: str) -> str:
        """Record ``agent_id`` as the owner unless the printer has one; returns the owner."""
        await self.store._execute(
            "INSERT INTO printers (branch_id, printer_id, agent_id, provisioned, updated_at) "
            "VALUES (?, ?, ?, 0, ?) ON CONFLICT (branch_id, printer_id) DO NOTHING",
            [branch_id, printer_id, agent_id, time.time()],
        )
        return await self.owner(branch_id, printer_id) or agent_id

    async def provision(self, branch_id: str, agent_id: str, printers: list[str]) -> dict[str, str]:
        """Give ``printers`` to ``agent_id`` (provisioned). Printers another agent owns are not
        taken: returns them with their owner (empty: all given)."""
        taken: dict[str, str] = {}
        for printer_id in printers:
            owner = await self.owner(branch_id, printer_id)
            if owner is not None and owner != agent_id:
                taken[printer_id] = owner
        if taken:
            return taken
        for printer_id in printers:
            await self.store._execute(
                "INSERT INTO printers (branch_id, printer_id, agent_id, provisioned, updated_at) "
                "VALUES (?, ?, ?, 1, ?) ON CONFLICT (branch_id, printer_id) DO UPDATE "
                "SET provisioned = 1, updated_at = excluded.updated_at "
                "WHERE printers.agent_id = excluded.agent_id",
                [branch_id, printer_id, agent_id, time.time()],
            )
            owner = await self.owner(branch_id, printer_id)
            if owner is not None and owner != agent_id:
                taken[printer_id] = owner
        return taken

    async def release(self, branch_id: str, agent_id: str, printer_id: str | None = None) -> None:
        """The agent's printers (or one of them) are free again."""
        if printer_id is None:
            await self.store._execute(
                "DELETE FROM printers WHERE branch_id = ? AND agent_id = ?", [branch_id, agent_id]
            )
        else:
            await self.store._execute(
                "DELETE FROM printers WHERE branch_id = ? AND printer_id = ? AND agent_id = ?",
                [branch_id, printer_id, agent_id],
            )
