"""Printer ownership kept in the store: loaded into the registry at start, provisioning's word
written before the broker login exists, claims the registry learns written behind it."""

from __future__ import annotations

import asyncio
import logging

from protocol import ErrorCode

from ._errors import ApiError
from ._registry import Owner, Registry
from .store import Store
from .store._printers import PrinterTable

log = logging.getLogger("cloud_api.owners")


class OwnerBook:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.table: PrinterTable | None = None
        self._changes: asyncio.Queue[tuple[str, str, str, bool]] = asyncio.Queue()
        registry.on_owner.append(lambda *change: self._changes.put_nowait(change))

    async def open(self, store: Store) -> None:
        """Create the table if needed and load every owner (before the broker's messages)."""
        self.table = PrinterTable(store)
        await self.table.create()
        rows = await self.table.all()
        self.registry.load_owners(
            (r.branch_id, r.printer_id, Owner(r.agent_id, r.provisioned)) for r in rows
        )
        log.info("%d printer owners loaded from the store", len(rows))

    async def run(self) -> None:
        """Write the owners the registry learns (and the printers it frees), in order."""
        while True:
            branch_id, printer_id, agent_id, claimed = await self._changes.get()
            try:
                await self._write(branch_id, printer_id, agent_id, claimed)
            except Exception:
                log.exception("storing the owner of printer %s/%s failed", branch_id, printer_id)

    async def _write(self, branch_id: str, printer_id: str, agent_id: str, claimed: bool) -> None:
        table = self._table()
        if not claimed:
            await table.release(branch_id, agent_id, printer_id)
            return
        owner = await table.learn(branch_id, printer_id, agent_id)
        if owner != agent_id:  # another instance learned another owner first: it stands
            self.registry.set_owner(branch_id, printer_id, Owner(owner))

    def _table(self) -> PrinterTable:
        if self.table is None:
            raise ApiError(ErrorCode.INTERNAL, "the printer table is not open")
        return self.table

    async def provision(self, branch_id: str, agent_id: str, printers: list[str]) -> None:
        """Give ``printers`` to the agent, or refuse (409) when another agent of the branch
        owns one of them."""
        taken = await self._table().provision(branch_id, agent_id, printers)
        if taken:
            names = ", ".join(f"{p} (agent {a})" for p, a in sorted(taken.items()))
            raise ApiError(
                ErrorCode.CONFLICT,
                f"printers of branch {branch_id} already belong to other agents: {names}",
            )
        for printer_id in printers:
            self.registry.set_owner(branch_id, printer_id, Owner(agent_id, provisioned=True))

    async def release(self, branch_id: str, agent_id: str) -> None:
        """A revoked agent's printers are free again."""
        await self._table().release(branch_id, agent_id)
        for printer_id in self.registry.owned_by(branch_id, agent_id):
            self.registry.set_owner(branch_id, printer_id, None)
