"""API keys for dashboard callers: created by the admin, bound to one chain and a set of
branches, shown once, stored as a SHA-256 hash and compared in constant time.

Why SHA-256 and not bcrypt/argon2: those slow hashes exist to make guessing *low-entropy*
human passwords expensive. Our keys are 256 random bits; no hash speed makes 2**256 guesses
feasible, so a slow hash would add nothing but ~100 ms of CPU to every API call (and a cheap
way to load the API). A leaked key file still reveals no usable key.

Key format: ``pmk_{key_id}_{secret}``. ``key_id`` (12 hex digits) is public: it names the key
in listings and finds its record without scanning; the secret carries the entropy.

A key may carry an expiry. A rotation hands out a new key with the same chain and branches and
lets the old one live on for a grace period (its expiry moves to the end of it), so a dashboard
can switch over without a window in which neither key works.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import msgspec

from protocol import ErrorCode, is_valid_id

from .._errors import ApiError
from ._store import ApiKeyRecord, ApiKeyStore

KEY_PREFIX = "pmk_"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """``(key_id, key)`` for a fresh key."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


class ApiKeyService:
    def __init__(self, store: ApiKeyStore) -> None:
        self.store = store

    async def create(
        self,
        chain: str,
        branches: list[str],
        name: str = "",
        *,
        expires_in: float | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        """Create a key, valid for ``expires_in`` seconds (None: until revoked); returns its
        record and the key itself (shown once, never stored)."""
        if expires_in is not None and not expires_in > 0:
            raise ApiError(ErrorCode.INVALID_REQUEST, "expires_in must be a positive number")
        bad = [b for b in [chain, *branches] if not is_valid_id(b)]
        if bad:
            raise ApiError(ErrorCode.INVALID_REQUEST, f"invalid chain or branch id {bad[0][:64]!r}")
        if not branches:
            raise ApiError(ErrorCode.INVALID_REQUEST, "a key needs at least one branch")
        wanted = set(branches)
        for other in await self.store.all():
            taken = wanted & set(other.branches)
            if other.active and other.chain != chain and taken:
                raise ApiError(
                    ErrorCode.CONFLICT,
                    f"branch {sorted(taken)[0]!r} belongs to another chain",
                )
        key_id, key = new_key()
        now = time.time()
        record = ApiKeyRecord(
            key_id=key_id,
            name=name,
            chain=chain,
            branches=sorted(wanted),
            sha256=_digest(key),
            created_at=now,
            expires_at=now + expires_in if expires_in is not None else None,
        )
        await self.store.add(record)
        return record, key

    async def authenticate(self, key: str) -> ApiKeyRecord | None:
        """The active record ``key`` belongs to, or None."""
        if not key.startswith(KEY_PREFIX):
            return None
        key_id, _, secret = key[len(KEY_PREFIX) :].partition("_")
        if not secret or len(key_id) != 12:
            return None
        record = await self.store.get(key_id)
        if record is None or not record.valid_at(time.time()):
            return None
        if not hmac.compare_digest(_digest(key), record.sha256):
            return None
        return record

    async def list(self) -> list[ApiKeyRecord]:
        return await self.store.all()

    async def _get(self, key_id: str) -> ApiKeyRecord:
        record = await self.store.get(key_id)
        if record is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"no API key {key_id[:64]!r}")
        return record

    async def rotate(
        self, key_id: str, grace: float, *, expires_in: float | None = None
    ) -> tuple[ApiKeyRecord, ApiKeyRecord, str]:
        """Replace a key: a new key with the same chain, branches and name (valid for
        ``expires_in`` s, None: until revoked), while the old one stays valid ``grace`` more
        seconds (never longer than it would have anyway). Returns (new record, old record as
        it is now, new key)."""
        if not grace >= 0:
            raise ApiError(ErrorCode.INVALID_REQUEST, "grace must be 0 or more seconds")
        old = await self._get(key_id)
        if not old.active:
            raise ApiError(ErrorCode.CONFLICT, f"API key {key_id} is revoked or expired")
        if old.replaced_by is not None:
            raise ApiError(ErrorCode.CONFLICT, f"API key {key_id} was rotated already")
        new, key = await self.create(old.chain, old.branches, old.name, expires_in=expires_in)
        end = time.time() + grace
        old = msgspec.structs.replace(
            old,
            expires_at=min(end, old.expires_at) if old.expires_at is not None else end,
            replaced_by=new.key_id,
        )
        await self.store.replace(old)
        return new, old, key

    async def revoke(self, key_id: str) -> ApiKeyRecord:
        record = await self._get(key_id)
        if record.revoked_at is None:
            record = msgspec.structs.replace(record, revoked_at=time.time())
            await self.store.replace(record)
        return record
