"""The dynamic-security plugin: its initial JSON document and its runtime control API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import aiomqtt

from ._errors import BrokerError
from ._roles import ADMIN_ROLE, Role, admin_role

log = logging.getLogger(__name__)

_CONTROL = "$CONTROL/dynamic-security/v1"
_RESPONSE = f"{_CONTROL}/response"
_ITERATIONS = 101


class DynSecError(BrokerError):
    """The dynamic-security plugin refused a command."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"dynamic-security {command} failed: {error}")
        self.command = command
        self.error = error


@dataclass(frozen=True)
class Credentials:
    """One MQTT login."""

    username: str
    password: str


def new_password() -> str:
    """A random password for an MQTT client (URL-safe, 32 characters)."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, salt: bytes | None = None) -> dict[str, Any]:
    """Password fields the plugin stores: PBKDF2-SHA512 over a 12-byte salt, base64."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": _ITERATIONS,
    }


def initial_dynsec_document(
    clients: Iterable[tuple[Credentials, Sequence[str]]], roles: Iterable[Role]
) -> dict[str, Any]:
    """The plugin's JSON file for a new broker: default deny, the given clients and roles."""
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [
            {
                "username": creds.username,
                "textName": creds.username,
                **hash_password(creds.password),
                "roles": [{"rolename": name} for name in role_names],
            }
            for creds, role_names in clients
        ],
        "groups": [],
        "roles": [role.as_json() for role in (admin_role(), *roles)],
    }


def write_initial_dynsec(path: os.PathLike[str], admin: Credentials, **kwargs: Any) -> None:
    """Write the plugin file unless it exists (it holds every later provisioning change)."""
    if os.path.exists(path):
        return
    clients = [(admin, [ADMIN_ROLE]), *kwargs.get("clients", [])]
    document = initial_dynsec_document(clients, kwargs.get("roles", []))
    tmp = f"{os.fspath(path)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(document, fh, indent=2)
    os.replace(tmp, path)


class DynSecAdmin:
    """An admin MQTT client driving ``$CONTROL/dynamic-security/v1`` (no broker restart)."""

    def __init__(
        self,
        host: str,
        port: int,
        admin: Credentials,
        *,
        timeout: float = 5.0,
        **client_kwargs: Any,
    ) -> None:
        self._client = aiomqtt.Client(
            host,
            port,
            username=admin.username,
            password=admin.password,
            protocol=aiomqtt.ProtocolVersion.V5,
            identifier=f"{admin.username}-{secrets.token_hex(4)}",
            **client_kwargs,
        )
        self._timeout = timeout
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        await self._client.subscribe(_RESPONSE, qos=1)
        self._reader = asyncio.create_task(self._read(), name="dynsec-responses")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._client.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for message in self._client.messages:
            try:
                responses = json.loads(bytes(message.payload))["responses"]  # type: ignore[arg-type,unused-ignore]
            except (ValueError, KeyError, TypeError):
                log.warning("dropping malformed dynamic-security response")
                continue
            for response in responses:
                future = self._pending.get(response.get("correlationData", ""))
                if future is not None and not future.done():
                    future.set_result(response)

    async def command(self, command: str, **fields: Any) -> dict[str, Any]:
        """Run one plugin command; raises :class:`DynSecError` when the plugin refuses it."""
        correlation = str(next(self._ids))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = future
        try:
            payload = {"commands": [{"command": command, "correlationData": correlation, **fields}]}
            await self._client.publish(_CONTROL, json.dumps(payload), qos=1)
            async with asyncio.timeout(self._timeout):
                response = await future
        except TimeoutError as exc:
            raise DynSecError(command, "no response from the broker") from exc
        finally:
            self._pending.pop(correlation, None)
        if response.get("error"):
            raise DynSecError(command, str(response["error"]))
        return response

    async def commands(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run several plugin commands in one control message: one round trip for all of them
        (bulk provisioning). Raises :class:`DynSecError` for the first one the plugin refused."""
        loop = asyncio.get_running_loop()
        batch = []
        futures: list[asyncio.Future[dict[str, Any]]] = []
        for fields in commands:
            correlation = str(next(self._ids))
            futures.append(loop.create_future())
            self._pending[correlation] = futures[-1]
            batch.append({**fields, "correlationData": correlation})
        try:
            await self._client.publish(_CONTROL, json.dumps({"commands": batch}), qos=1)
            async with asyncio.timeout(self._timeout):
                responses = await asyncio.gather(*futures)
        except TimeoutError as exc:
            raise DynSecError("batch", "no response from the broker") from exc
        finally:
            for fields in batch:
                self._pending.pop(fields["correlationData"], None)
        for fields, response in zip(batch, responses, strict=True):
            if response.get("error"):
                raise DynSecError(str(fields["command"]), str(response["error"]))
        return responses

    async def create_role(self, role: Role) -> None:
        await self.command("createRole", rolename=role.name)
        for acl in role.acls:
            await self.command("addRoleACL", rolename=role.name, **acl.as_json())

    async def delete_role(self, name: str) -> None:
        await self.command("deleteRole", rolename=name)

    async def create_client(self, creds: Credentials, roles: Sequence[str]) -> None:
        await self.command(
            "createClient",
            username=creds.username,
            password=creds.password,
            roles=[{"rolename": name} for name in roles],
        )

    async def delete_client(self, username: str) -> None:
        await self.command("deleteClient", username=username)

    async def set_password(self, username: str, password: str) -> None:
        await self.command("setClientPassword", username=username, password=password)

    async def disable_client(self, username: str) -> None:
        """Refuse new logins and disconnect a connected session at once."""
        await self.command("disableClient", username=username)

    async def enable_client(self, username: str) -> None:
        await self.command("enableClient", username=username)

    async def get_client(self, username: str) -> dict[str, Any]:
        response = await self.command("getClient", username=username)
        return dict(response.get("data", {}).get("client", {}))
