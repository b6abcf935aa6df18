"""Bearer-token authentication: who the caller is and which branches it may see.

Two kinds of callers: the operator's admin token (every branch, provisioning, key management)
and dashboard API keys (``pmk_...``), each bound to one chain and a set of branches.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from protocol import ErrorCode

from ._errors import ApiError

if TYPE_CHECKING:
    from .apikeys import ApiKeyService


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``branches`` is None for a caller that sees every branch."""

    name: str
    branches: frozenset[str] | None = None
    admin: bool = False
    #: The chain (tenant) of an API key; None for the admin.
    chain: str | None = None

    def may_see(self, branch_id: str) -> bool:
        return self.branches is None or branch_id in self.branches


class Authenticator:
    def __init__(self, admin_token: str, keys: ApiKeyService | None = None) -> None:
        self._admin_token = admin_token.encode()
        self._keys = keys

    async def authenticate(self, header: str | None) -> Principal:
        if not header or not header.startswith("Bearer "):
            raise ApiError(ErrorCode.UNAUTHORIZED, "missing bearer token")
        token = header[len("Bearer ") :].strip()
        if hmac.compare_digest(token.encode(), self._admin_token):
            return Principal(name="admin", admin=True)
        if self._keys is not None:
            record = await self._keys.authenticate(token)
            if record is not None:
                return Principal(
                    name=f"key:{record.key_id}",
                    branches=frozenset(record.branches),
                    chain=record.chain,
                )
        raise ApiError(ErrorCode.UNAUTHORIZED, "invalid bearer token")


async def require_principal(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Route guard: authenticate and stash the principal on the connection state.

    ``async`` on purpose: Litestar runs a sync guard in a worker thread on every request.
    """
    authenticator: Authenticator = connection.app.state.authenticator
    connection.state.principal = await authenticator.authenticate(
        connection.headers.get("authorization")
    )


def principal_of(connection: ASGIConnection) -> Principal:  # type: ignore[type-arg]
    return connection.state.principal  # type: ignore[no-any-return]


def check_branch(principal: Principal, branch_id: str) -> None:
    """404, not 403, for a branch the caller may not see: branch ids do not leak."""
    if not principal.may_see(branch_id):
        raise ApiError(ErrorCode.NOT_FOUND, f"branch {branch_id[:64]!r} not found")


def require_admin(principal: Principal) -> None:
    """403 for routes only the operator may use (provisioning, API keys)."""
    if not principal.admin:
        raise ApiError(ErrorCode.FORBIDDEN, "this route needs the admin token")
