"""Bearer-token authentication: who the caller is and which branches it may see.

Two kinds of callers: the operator's admin token (every branch, provisioning, key management)
and dashboard API keys (``pmk_...``), each bound to one chain and a set of branches.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from litestar.connection import ASGIConnection
from litestar.types import ASGIApp, Receive, Scope, Send

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


def authenticated(authenticator: Authenticator) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware of the authenticated routes: the caller's principal from its bearer token,
    stashed in the request's state before the route runs; 401 without a valid token.

    Middleware, not a Litestar route guard: a guard costs a copy of the route handler per
    request, a visible share of a test print's CPU.
    """

    def middleware(app: ASGIApp) -> ASGIApp:
        async def authenticate_first(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] in ("http", "websocket"):
                header = None
                for name, value in scope["headers"]:
                    if name == b"authorization":
                        header = value.decode("latin-1")
                        break
                principal = await authenticator.authenticate(header)
                scope.setdefault("state", {})[_PRINCIPAL] = principal
            await app(scope, receive, send)

        return authenticate_first

    return middleware


_PRINCIPAL: Final = "principal"


def principal_of_scope(scope: Scope) -> Principal | None:
    """The principal :func:`authenticated` stashed, if it ran."""
    state = scope.get("state") or {}
    principal = state.get(_PRINCIPAL)
    return principal if isinstance(principal, Principal) else None


def principal_of(connection: ASGIConnection) -> Principal:  # type: ignore[type-arg]
    return connection.scope["state"][_PRINCIPAL]  # type: ignore[no-any-return]


def check_branch(principal: Principal, branch_id: str) -> None:
    """404, not 403, for a branch the caller may not see: branch ids do not leak."""
    if not principal.may_see(branch_id):
        raise ApiError(ErrorCode.NOT_FOUND, f"branch {branch_id[:64]!r} not found")


def require_admin(principal: Principal) -> None:
    """403 for routes only the operator may use (provisioning, API keys)."""
    if not principal.admin:
        raise ApiError(ErrorCode.FORBIDDEN, "this route needs the admin token")
