"""HTTP routes for API keys (admin only; thin: the service holds the logic)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post

from .._auth import principal_of, require_admin
from ._service import ApiKeyService
from ._store import ApiKeyRecord

Id = Annotated[str, msgspec.Meta(max_length=64)]


class CreateApiKey(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    chain: Id
    branches: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=10_000)]
    name: Annotated[str, msgspec.Meta(max_length=100)] = ""
    #: Seconds the key stays valid (absent: until revoked).
    expires_in: Annotated[float, msgspec.Meta(gt=0, le=10 * 365 * 86400)] | None = None


class RotateApiKey(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: Seconds the old key stays valid after the rotation (0: refused at once).
    grace: Annotated[float, msgspec.Meta(ge=0, le=30 * 86400)] = 3600.0
    #: Seconds the new key stays valid (absent: until revoked).
    expires_in: Annotated[float, msgspec.Meta(gt=0, le=10 * 365 * 86400)] | None = None


class ApiKeyView(msgspec.Struct, kw_only=True, frozen=True):
    key_id: str
    name: str
    chain: str
    branches: list[str]
    created_at: float
    revoked_at: float | None
    expires_at: float | None
    replaced_by: str | None


class ApiKeyCreated(ApiKeyView, kw_only=True, frozen=True):
    #: The key itself: shown in this answer only, never stored, never shown again.
    key: str


def _view(record: ApiKeyRecord) -> ApiKeyView:
    return ApiKeyView(
        key_id=record.key_id,
        name=record.name,
        chain=record.chain,
        branches=record.branches,
        created_at=record.created_at,
        revoked_at=record.revoked_at,
        expires_at=record.expires_at,
        replaced_by=record.replaced_by,
    )


class ApiKeysController(Controller):
    path = "/v1/api-keys"
    tags = ["api-keys"]

    @post("/", status_code=201, summary="Create a dashboard key for a chain's branches")
    async def create_key(
        self, request: Request[Any, Any, Any], data: CreateApiKey, api_key_service: ApiKeyService
    ) -> ApiKeyCreated:
        """The answer holds the key; only its SHA-256 is kept. 409 ``CONFLICT`` when a branch
        belongs to another chain already."""
        require_admin(principal_of(request))
        record, key = await api_key_service.create(
            data.chain, data.branches, data.name, expires_in=data.expires_in
        )
        return ApiKeyCreated(**msgspec.structs.asdict(_view(record)), key=key)

    @post(
        "/{key_id:str}/rotate",
        status_code=201,
        summary="Replace a key; the old one stays valid for a grace period",
    )
    async def rotate_key(
        self,
        request: Request[Any, Any, Any],
        key_id: str,
        api_key_service: ApiKeyService,
        data: RotateApiKey | None = None,
    ) -> Response[ApiKeyCreated]:
        """The new key (shown once) with the same chain and branches; the old key's
        ``expires_at`` moves to the end of ``grace``. 409 for a key revoked, expired or
        rotated already."""
        require_admin(principal_of(request))
        body = data or RotateApiKey()
        record, _, key = await api_key_service.rotate(
            key_id, body.grace, expires_in=body.expires_in
        )
        created = ApiKeyCreated(**msgspec.structs.asdict(_view(record)), key=key)
        # Cache-Control: no-store comes with every response of the API (cloud_api._app)
        return Response(created, status_code=201)

    @get("/", summary="Every key (without the keys themselves)")
    async def list_keys(
        self, request: Request[Any, Any, Any], api_key_service: ApiKeyService
    ) -> list[ApiKeyView]:
        require_admin(principal_of(request))
        return [_view(r) for r in await api_key_service.list()]

    @delete("/{key_id:str}", status_code=200, summary="Revoke a key (refused from now on)")
    async def revoke_key(
        self, request: Request[Any, Any, Any], key_id: str, api_key_service: ApiKeyService
    ) -> ApiKeyView:
        require_admin(principal_of(request))
        return _view(await api_key_service.revoke(key_id))
