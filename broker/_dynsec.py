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

from mqtt_adapter import make_client
from protocol import MAX_PAYLOAD_BYTES

from ._errors import BrokerError
from ._roles import ADMIN_ROLE, Acl, Role, admin_role, doctor_username

log = logging.getLogger(__name__)

_CONTROL = "$CONTROL/dynamic-security/v1"
_RESPONSE = f"{_CONTROL}/response"
_ITERATIONS = 101
#: Bytes of commands per control message: the broker refuses a larger payload
#: (``message_size_limit``, :mod:`broker._config`) and drops the admin's connection for it.
_CONTROL_BYTES = MAX_PAYLOAD_BYTES - 16 * 1024


def control_chunks(
    commands: Sequence[dict[str, Any]], count: int, size: int = _CONTROL_BYTES
) -> list[Sequence[dict[str, Any]]]:
    """``commands`` in order, split so that each control message holds at most ``count``
    commands and about ``size`` bytes of them (a single larger command goes alone)."""
    chunks: list[Sequence[dict[str, Any]]] = []
    start, used = 0, 0
    for at, command in enumerate(commands):
        # the command as sent, plus its correlation data
        cost = len(json.dumps(command)) + 40
        if at > start and (at - start >= count or used + cost > size):
            chunks.append(commands[start:at])
            start, used = at, 0
        used += cost
    if start < len(commands):
        chunks.append(commands[start:])
    return chunks


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


Client = tuple[Credentials, Sequence[str]] | tuple[Credentials, Sequence[str], str | None]


def initial_dynsec_document(clients: Iterable[Client], roles: Iterable[Role]) -> dict[str, Any]:
    """The plugin's JSON file for a new broker: default deny, the given clients and roles.

    A client is ``(credentials, role names)`` or ``(credentials, role names, client id)``: with a
    client id the login connects under that id only."""
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [_client_json(*client) for client in clients],
        "groups": [],
        "roles": [role.as_json() for role in (admin_role(), *roles)],
    }


def _client_json(
    creds: Credentials, role_names: Sequence[str], clientid: str | None = None
) -> dict[str, Any]:
    return {
        "username": creds.username,
        "textName": creds.username,
        **({"clientid": clientid} if clientid else {}),
        **hash_password(creds.password),
        "roles": [{"rolename": name} for name in role_names],
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


def role_command(role: Role) -> dict[str, Any]:
    """``createRole`` with its ACLs in the same command."""
    return {
        "command": "createRole",
        "rolename": role.name,
        "acls": [acl.as_json() for acl in role.acls],
    }


def client_command(
    creds: Credentials, roles: Sequence[str], *, clientid: str | None = None
) -> dict[str, Any]:
    """``createClient``; with ``clientid`` the login may connect under that client id only
    (the broker refuses any other with CONNACK 0x87), so it cannot take over another session."""
    return {
        "command": "createClient",
        "username": creds.username,
        "password": creds.password,
        **({"clientid": clientid} if clientid else {}),
        "roles": [{"rolename": name} for name in roles],
    }


def agent_client_commands(
    role: Role, creds: Credentials, *, doctor: bool = True
) -> list[dict[str, Any]]:
    """An agent's role and its two logins, both pinned to their own client id: the agent's
    (client id = username) and ``agent doctor``'s companion (same password and role)."""
    commands = [role_command(role), client_command(creds, [role.name], clientid=creds.username)]
    if doctor:
        companion = Credentials(doctor_username(creds.username), creds.password)
        commands.append(client_command(companion, [role.name], clientid=companion.username))
    return commands


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
        self._mqtt = make_client(
            host,
            port,
            client_id=f"{admin.username}-{secrets.token_hex(4)}",
            username=admin.username,
            password=admin.password,
            **client_kwargs,
        )
        self._timeout = timeout
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._mqtt.__aenter__()
        await self._mqtt.subscribe(_RESPONSE, qos=1)
        self._reader = asyncio.create_task(self._read(), name="dynsec-responses")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._mqtt.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for message in self._mqtt.messages:
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
        (response,) = await self.batch([{"command": command, **fields}])
        return response

    async def batch_results(
        self, commands: Sequence[dict[str, Any]], *, chunk: int = 500
    ) -> list[dict[str, Any]]:
        """Every command's response, refusals included (each response's ``error``)."""
        responses: list[dict[str, Any]] = []
        for part in control_chunks(commands, chunk):
            responses.extend(await self._send(part))
        return responses

    async def batch(
        self, commands: Sequence[dict[str, Any]], *, chunk: int = 500
    ) -> list[dict[str, Any]]:
        """Run many plugin commands, ``chunk`` of them per control message (fewer when they
        would exceed the broker's message size), in order.

        One round trip per chunk instead of one per command: provisioning 1,000 agents is two
        commands each (``createRole`` carries its ACLs), so a few messages instead of 2,000.
        Every command runs; the first refusal is raised afterwards as :class:`DynSecError`.
        """
        responses = await self.batch_results(commands, chunk=chunk)
        for request, response in zip(commands, responses, strict=True):
            if response.get("error"):
                raise DynSecError(str(request["command"]), str(response["error"]))
        return responses

    async def _send(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        correlations = [str(next(self._ids)) for _ in commands]
        futures = [loop.create_future() for _ in commands]
        self._pending.update(zip(correlations, futures, strict=True))
        try:
            payload = {
                "commands": [
                    {**command, "correlationData": correlation}
                    for command, correlation in zip(commands, correlations, strict=True)
                ]
            }
            # The plugin runs a message's commands before the broker acknowledges it and answers
            # them together, rewriting its whole JSON file per command (slower as it grows):
            # allow time per command, for the PUBACK as for the answers.
            allowed = self._timeout + 0.05 * len(commands)
            await self._mqtt.publish(_CONTROL, json.dumps(payload), qos=1, timeout=allowed)
            async with asyncio.timeout(allowed):
                return list(await asyncio.gather(*futures))
        except TimeoutError as exc:
            raise DynSecError(str(commands[0]["command"]), "no response from the broker") from exc
        finally:
            for correlation in correlations:
                self._pending.pop(correlation, None)

    async def create_role(self, role: Role) -> None:
        await self.batch([role_command(role)])

    async def create_agents(
        self, agents: Iterable[tuple[Role, Credentials]], *, doctor: bool = True
    ) -> None:
        """Provision many agents at once: each its role (with ACLs) and its client (and, with
        ``doctor``, its doctor's login: simulated agents need none)."""
        commands: list[dict[str, Any]] = []
        for role, creds in agents:
            commands.extend(agent_client_commands(role, creds, doctor=doctor))
        await self.batch(commands)

    async def delete_role(self, name: str) -> None:
        await self.command("deleteRole", rolename=name)

    async def create_client(
        self, creds: Credentials, roles: Sequence[str], *, clientid: str | None = None
    ) -> None:
        await self.batch([client_command(creds, roles, clientid=clientid)])

    async def set_client_id(self, username: str, clientid: str) -> None:
        """Bind an existing login to one client id."""
        await self.command("setClientId", username=username, clientid=clientid)

    async def remove_role_acl(self, role: str, acltype: str, topic: str) -> None:
        await self.command("removeRoleACL", rolename=role, acltype=acltype, topic=topic)

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

    async def get_role(self, name: str) -> dict[str, Any]:
        response = await self.command("getRole", rolename=name)
        return dict(response.get("data", {}).get("role", {}))

    async def list_clients(self) -> list[dict[str, Any]]:
        """Every client with its roles (``listClients`` verbose, all pages)."""
        response = await self.command("listClients", verbose=True, count=-1, offset=0)
        return list(response.get("data", {}).get("clients", []))

    async def add_role_acl(self, role: str, acl: Acl) -> None:
        await self.command("addRoleACL", rolename=role, **acl.as_json())

    async def publish_retained(self, topic: str, payload: bytes) -> None:
        """Publish a retained message (an empty payload makes the broker forget the topic)."""
        await self._mqtt.publish(topic, payload, qos=1, retain=True)
