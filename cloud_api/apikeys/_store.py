"""Where API keys live: a small async protocol, implemented in memory (tests) and in the job
store's database (:mod:`._db`: SQLite or PostgreSQL, shared by every API instance).

Only the SHA-256 of a key is stored, never the key.
"""

from __future__ import annotations

import time
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
    #: Epoch seconds from which the key is refused (None: never). A rotation sets it to the end
    #: of the old key's grace period.
    expires_at: float | None = None
    #: The key that replaced this one in a rotation.
    replaced_by: str | None = None

    def valid_at(self, now: float) -> bool:
        """Not revoked and not expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    @property
    def active(self) -> bool:
        return self.valid_at(time.time())


class ApiKeyStore(Protocol):
    """Storage of API key records (the hash, never the key)."""

    async def add(self, record: ApiKeyRecord) -> None: ...

    async def get(self, key_id: str) -> ApiKeyRecord | None: ...

    async def all(self) -> list[ApiKeyRecord]: ...

    async def replace(self, record: ApiKeyRecord) -> None:
        """Store a changed record (revocation, expiry) under its ``key_id``."""
        ...


class MemoryApiKeyStore:
    """Keys in a dict: unit tests. Forgets everything when the process ends."""

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


def read_key_file(path: str | Path) -> list[ApiKeyRecord]:
    """The records of an API-key JSON file of an earlier version (``api_keys_file``), to import
    them into the store once; [] when there is no such file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    return msgspec.json.decode(data, type=_KeyFile).keys
