"""A throw-away PostgreSQL database per test on the machine's server (127.0.0.1:5432)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
from collections.abc import Coroutine
from typing import Any

import pytest

ADMIN_URL = os.environ.get("PM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to completion on a loop of its own (callers may be inside a loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


def postgres_url(request: pytest.FixtureRequest) -> str:
    """Create a database for this test, dropped when the test ends."""
    asyncpg = pytest.importorskip("asyncpg")
    name = f"pm_test_{secrets.token_hex(6)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        _run(admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}: {exc}")
    request.addfinalizer(lambda: _run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
