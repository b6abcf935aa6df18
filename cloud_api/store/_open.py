"""Open a store from a URL: ``sqlite:///abs/path.db``, ``sqlite://relative.db``,
``sqlite://:memory:`` or ``postgresql://user@host/db``."""

from __future__ import annotations

from ._base import Store, StoreError


async def open_store(url: str) -> Store:
    if url.startswith("sqlite://"):
        from ._sqlite import SqliteStore

        return await SqliteStore.open(url.removeprefix("sqlite://") or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        from ._postgres import PostgresStore

        return await PostgresStore.open(url)
    raise StoreError(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")
