"""Instance leases in the store: who is alive, who died, and who adopted whom.

One row per API instance: it renews ``expires_at`` every ``lease_renew`` seconds. A lease that
expired and was not adopted is claimed by exactly one survivor, with a conditional update (the
same rule as every job transition: two instances never both win it). A renewal clears
``adopted_by``: an instance that comes back under its id is alive again.

Times are the instances' wall clocks (keep them in sync with NTP; a lease of 5 s tolerates skew
well below that).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, NamedTuple

from ..store import JobRecord, JobState, Store
from ..store._records import JOB_COLUMNS, row_to_job

SCHEMA: Final = """CREATE TABLE IF NOT EXISTS instance_leases (
    instance_id TEXT PRIMARY KEY,
    started_at DOUBLE PRECISION NOT NULL,
    renewed_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    adopted_by TEXT,
    adopted_at DOUBLE PRECISION,
    owner TEXT NOT NULL DEFAULT ''
)"""

_PG_SCHEMA_LOCK: Final = 726356


class Lease(NamedTuple):
    instance_id: str
    started_at: float
    renewed_at: float
    expires_at: float
    adopted_by: str | None
    adopted_at: float | None
    #: a token of the process holding the lease (two processes under one id differ in it)
    owner: str

    def alive(self, now: float) -> bool:
        return self.expires_at > now


class Leases:
    """The ``instance_leases`` table on the job store (SQLite or PostgreSQL)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    async def open(cls, store: Store) -> Leases:
        lock = f"SELECT pg_advisory_xact_lock({_PG_SCHEMA_LOCK})"
        first: tuple[str, list[Any]] = (lock if store.name == "postgresql" else "SELECT 1", [])
        await store._write(first, [(SCHEMA, [])])
        return cls(store)

    async def renew(
        self, instance_id: str, now: float, ttl: float, *, started: bool, owner: str = ""
    ) -> None:
        """Hold the lease until ``now + ttl``; ``started`` marks a new life of the instance."""
        await self.store._execute(
            "INSERT INTO instance_leases "
            "(instance_id, started_at, renewed_at, expires_at, owner) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (instance_id) DO UPDATE SET "
            "renewed_at = excluded.renewed_at, expires_at = excluded.expires_at, "
            "owner = excluded.owner, adopted_by = NULL, adopted_at = NULL"
            + (", started_at = excluded.started_at" if started else ""),
            [instance_id, now, now, now + ttl, owner],
        )

    async def release(self, instance_id: str, now: float) -> None:
        """A graceful stop: the lease ends now, so a survivor adopts at once."""
        await self.store._execute(
            "UPDATE instance_leases SET expires_at = ? WHERE instance_id = ?", [now, instance_id]
        )

    async def all(self) -> list[Lease]:
        rows = await self.store._fetch(
            "SELECT instance_id, started_at, renewed_at, expires_at, adopted_by, adopted_at, "
            "owner FROM instance_leases ORDER BY instance_id",
            [],
        )
        return [Lease(*row) for row in rows]

    async def forget_adopted(self, before: float) -> int:
        """Remove the rows of instances adopted before ``before`` (ids of workers and machines
        gone for good); an instance that comes back later simply inserts its row again."""
        return await self.store._execute(
            "DELETE FROM instance_leases WHERE adopted_at IS NOT NULL AND adopted_at < ?",
            [before],
        )

    async def reopen_adoptions_of(self, adopter: str, now: float) -> int:
        """Leases ``adopter`` claimed, still expired, become claimable again: an adopter that
        died itself may have died before it finished."""
        return await self.store._execute(
            "UPDATE instance_leases SET adopted_by = NULL, adopted_at = NULL "
            "WHERE adopted_by = ? AND expires_at <= ?",
            [adopter, now],
        )

    async def unclaim(self, dead: str, survivor: str) -> None:
        """Give up a claim whose adoption failed, so it is tried again."""
        await self.store._execute(
            "UPDATE instance_leases SET adopted_by = NULL, adopted_at = NULL "
            "WHERE instance_id = ? AND adopted_by = ?",
            [dead, survivor],
        )

    async def claim(self, dead: str, survivor: str, now: float) -> bool:
        """Make ``survivor`` the adopter of ``dead`` if its lease expired and nobody else
        adopted it; True for the one instance that wins."""
        rows = await self.store._write(
            (
                "UPDATE instance_leases SET adopted_by = ?, adopted_at = ? "
                "WHERE instance_id = ? AND expires_at <= ? AND adopted_by IS NULL "
                "RETURNING instance_id",
                [survivor, now, dead, now],
            )
        )
        return bool(rows)


async def take_over_jobs(
    store: Store, dead: str, survivor: str, states: Iterable[JobState]
) -> list[JobRecord]:
    """The jobs ``dead`` had in flight become ``survivor``'s (``sent_by``), in one statement;
    returns them as they are now. The job states are not touched."""
    values = [s.value for s in states]
    marks = ", ".join("?" for _ in values)
    rows: Sequence[Sequence[Any]] = await store._write(
        (
            f"UPDATE jobs SET sent_by = ? WHERE sent_by = ? AND state IN ({marks}) "
            f"RETURNING {JOB_COLUMNS}",
            [survivor, dead, *values],
        )
    )
    return [row_to_job(row) for row in rows]
