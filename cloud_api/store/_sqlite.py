"""SQLite backend (default): one file, WAL, one connection serialised by aiosqlite's thread."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from ._base import SCHEMA, Store, StoreError


class SqliteStore(Store):
    name = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        # one connection: transactions must not interleave on it
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a crash of the process (the API restart tests); FULL would add an
        # fsync per commit for power loss, which a cloud deployment gets from PostgreSQL instead.
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=5000")
        for statement in SCHEMA:
            await conn.execute(
                statement.format(blob="BLOB", serial="INTEGER PRIMARY KEY AUTOINCREMENT")
            )
        return cls(conn, path)

    async def close(self) -> None:
        await self._conn.close()

    async def ping(self) -> None:
        try:
            await self._conn.execute("SELECT 1")
        except Exception as exc:
            raise StoreError(f"sqlite {self.path}: {exc}") from exc

    async def _execute(self, sql: str, args: Sequence[Any]) -> int:
        cursor = await self._conn.execute(sql, list(args))
        return cursor.rowcount

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        cursor = await self._conn.execute(sql, list(args))
        return list(await cursor.fetchall())

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[SqliteStore]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def execute(self, sql: str, args: Sequence[Any]) -> int:
        """Tx protocol: statements inside :meth:`_tx` run on the same connection."""
        return await self._execute(sql, args)
