"""Where API keys live: a small async protocol with an in-memory and a JSON-file implementation.

Only the SHA-256 of a key is stored, never the key. The database-backed store (next to the job
store) implements the same :class:`ApiKeyStore` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import msgspec


class ApiKeyRecord(msgspec.Struct, kw_only=True, frozen=True):
    """One key as stored: who it belongs to, what it sees, its hash."""

    key_id: str
    name: str = ""
    #: The chain (tenant) the key belongs to; a branch belongs to one chain only.
    chain: str
    #: Branches the key may see; every other branch answers 404.
    branches: list[str]
    #: Hex SHA-256 of the whole key string.
    sha256: str
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class ApiKeyStore(Protocol):
    """Storage of API key records (the hash, never the key)."""

    async def add(self, record: ApiKeyRecord) -> None: ...

    async def get(self, key_id: str) -> ApiKeyRecord | None: ...

    async def all(self) -> list[ApiKeyRecord]: ...

    async def replace(self, record: ApiKeyRecord) -> None:
        """Store a changed record (revocation) under its ``key_id``."""
        ...


class MemoryApiKeyStore:
    """Keys in a dict: tests, and a single API process that may forget keys on restart."""

    def __init__(self) -> None:
        self._records: dict[str, ApiKeyRecord] = {}

    async def add(self, record: ApiKeyRecord) -> None:
        if record.key_id in self._records:
            raise KeyError(f"API key {record.key_id} exists")
        self._records[record.key_id] = record

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        return self._records.get(key_id)

    async def all(self) -> list[ApiKeyRecord]:
        return sorted(self._records.values(), key=lambda r: r.created_at)

    async def replace(self, record: ApiKeyRecord) -> None:
        self._records[record.key_id] = record


class _KeyFile(msgspec.Struct, kw_only=True):
    version: int = 1
    keys: list[ApiKeyRecord] = []


class JsonFileApiKeyStore(MemoryApiKeyStore):
    """Keys in memory, written through to one JSON file so they survive API restarts.

    Each change rewrites the file atomically (temporary file in the same directory, fsync,
    rename) with mode 0600. One API process owns the file; several instances need the
    database-backed store.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self._lock = asyncio.Lock()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        for record in msgspec.json.decode(data, type=_KeyFile).keys:
            self._records[record.key_id] = record

    async def add(self, record: ApiKeyRecord) -> None:
        async with self._lock:
            await super().add(record)
            await self._save()

    async def replace(self, record: ApiKeyRecord) -> None:
        async with self._lock:
            await super().replace(record)
            await self._save()

    async def _save(self) -> None:
        data = msgspec.json.format(msgspec.json.encode(_KeyFile(keys=await self.all())), indent=2)
        await asyncio.to_thread(_atomic_write, self.path, data)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
