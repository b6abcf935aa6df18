"""PostgreSQL backend (asyncpg pool), for several API instances sharing the work."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ._base import MIGRATIONS, SCHEMA, Statement, Store, StoreError

_MARK = re.compile(r"\?")


def _numbered(sql: str) -> str:
    """The shared SQL uses ``?``; asyncpg wants ``$1, $2, ...``."""
    counter = iter(range(1, 10_000))
    return _MARK.sub(lambda _: f"${next(counter)}", sql)


def _rowcount(status: str) -> int:
    parts = status.split()
    return int(parts[-1]) if parts and parts[-1].isdigit() else 0


class PostgresStore(Store):
    name = "postgresql"

    def __init__(self, pool: Any, url: str) -> None:
        self._pool = pool
        self.url = url

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        try:
            import asyncpg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StoreError(
                "PostgreSQL needs asyncpg: pip install 'printermaster[postgres]'"
            ) from exc
        pool = await asyncpg.create_pool(url, min_size=1, max_size=10)
        async with pool.acquire() as conn:
            # serialise schema creation between instances starting together
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(726354)")
                for statement in SCHEMA:
                    await conn.execute(statement.format(blob="BYTEA", serial="BIGSERIAL"))
                for table, column, kind in MIGRATIONS:  # an older database gains them
                    await conn.execute(
                        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} "
                        f"{kind.format(blob='BYTEA')}"
                    )
        return cls(pool, url)

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        try:
            async with self._pool.acquire() as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:
            raise StoreError(f"postgresql: {exc}") from exc

    async def _execute(self, sql: str, args: Sequence[Any]) -> int:
        async with self._pool.acquire() as conn:
            return _rowcount(await conn.execute(_numbered(sql), *args))

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        async with self._pool.acquire() as conn:
            return [tuple(r) for r in await conn.fetch(_numbered(sql), *args)]

    async def _write(
        self, first: Statement, then: Sequence[Statement] = (), *, only_if_rows: bool = False
    ) -> list[Sequence[Any]]:
        async with self._pool.acquire() as conn, conn.transaction():
            return await _conditional(conn, first, then, only_if_rows)

    async def _write_each(
        self, writes: Sequence[tuple[Statement, Sequence[Statement]]], read: Statement | None = None
    ) -> tuple[list[list[Sequence[Any]]], list[Sequence[Any]]]:
        """Several conditional writes, then a read that sees them, in one transaction on one
        connection."""
        results: list[list[Sequence[Any]]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            for first, then in writes:
                results.append(await _conditional(conn, first, then, True))
            read_rows: list[Sequence[Any]] = (
                [tuple(r) for r in await conn.fetch(_numbered(read[0]), *read[1])] if read else []
            )
        return results, read_rows


async def _conditional(
    conn: Any, first: Statement, then: Sequence[Statement], only_if_rows: bool
) -> list[Sequence[Any]]:
    """``first`` (its rows are the result), then ``then`` — with ``only_if_rows``, only when
    ``first`` returned a row. Inside the caller's transaction."""
    rows: list[Sequence[Any]] = [tuple(r) for r in await conn.fetch(_numbered(first[0]), *first[1])]
    if rows or not only_if_rows:
        for sql, args in then:
            await conn.execute(_numbered(sql), *args)
    return rows
