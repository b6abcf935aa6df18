"""API keys in the job store's database: one ``api_keys`` table next to the jobs, so every API
instance (worker or machine) sees a key the moment another one created, rotated or revoked it.

The table is created here, not with the jobs schema: the keys are this package's business.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from ..store import Store
from ._store import ApiKeyRecord, read_key_file

log = logging.getLogger("cloud_api.apikeys")

_COLUMNS: Final = (
    "key_id, name, chain, branches, sha256, created_at, revoked_at, expires_at, replaced_by"
)

SCHEMA: Final = """CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    chain TEXT NOT NULL,
    branches TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION,
    expires_at DOUBLE PRECISION,
    replaced_by TEXT
)"""

#: Serialises schema creation between PostgreSQL instances starting together (a concurrent
#: ``CREATE TABLE IF NOT EXISTS`` can fail there); the number is this table's own.
_PG_SCHEMA_LOCK: Final = 726355


def _row(record: ApiKeyRecord) -> list[Any]:
    return [
        record.key_id,
        record.name,
        record.chain,
        msgspec.json.encode(record.branches).decode(),
        record.sha256,
        record.created_at,
        record.revoked_at,
        record.expires_at,
        record.replaced_by,
    ]


def _record(row: Sequence[Any]) -> ApiKeyRecord:
    key_id, name, chain, branches, sha256, created, revoked, expires, replaced = row
    return ApiKeyRecord(
        key_id=key_id,
        name=name,
        chain=chain,
        branches=msgspec.json.decode(branches, type=list[str]),
        sha256=sha256,
        created_at=created,
        revoked_at=revoked,
        expires_at=expires,
        replaced_by=replaced,
    )


class DbApiKeyStore:
    """:class:`ApiKeyStore` on the job store (SQLite or PostgreSQL). Every call reads or writes
    the database: no copy in memory that another instance could leave stale."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    async def open(cls, store: Store) -> DbApiKeyStore:
        lock = f"SELECT pg_advisory_xact_lock({_PG_SCHEMA_LOCK})"
        first: tuple[str, list[Any]] = (lock if store.name == "postgresql" else "SELECT 1", [])
        await store._write(first, [(SCHEMA, [])])
        return cls(store)

    async def add(self, record: ApiKeyRecord) -> None:
        marks = ", ".join("?" for _ in _COLUMNS.split(","))
        await self.store._execute(
            f"INSERT INTO api_keys ({_COLUMNS}) VALUES ({marks})", _row(record)
        )

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        rows = await self.store._fetch(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", [key_id]
        )
        return _record(rows[0]) if rows else None

    async def all(self) -> list[ApiKeyRecord]:
        rows = await self.store._fetch(
            f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, key_id", []
        )
        return [_record(r) for r in rows]

    async def replace(self, record: ApiKeyRecord) -> None:
        await self.store._execute(
            "UPDATE api_keys SET name = ?, chain = ?, branches = ?, sha256 = ?, created_at = ?, "
            "revoked_at = ?, expires_at = ?, replaced_by = ? WHERE key_id = ?",
            [*_row(record)[1:], record.key_id],
        )


async def import_key_file(store: Store, path: str | None) -> DbApiKeyStore:
    """The key store on ``store``; with ``path`` (the JSON key file of earlier versions), the
    keys it holds that the database lacks are copied in first (the file is left as it is)."""
    keys = await DbApiKeyStore.open(store)
    if path is None:
        return keys
    imported = 0
    for record in read_key_file(path):
        if await keys.get(record.key_id) is None:
            await keys.add(record)
            imported += 1
    if imported:
        log.info("imported %d API keys from %s into the store", imported, path)
    return keys
