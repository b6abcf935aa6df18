"""Agent and debug logins as a lifecycle over the dynamic-security plugin: add, rotate, revoke,
list. Used by the API's provisioning service and by ``printermaster broker provision``; the broker
applies every change at once, without a restart.

Mosquitto 2.0 answers ``setClientPassword`` and ``disableClient`` by disconnecting the client's
live session (DISCONNECT reason 0x98), so a rotated or revoked login stops working at once, not at
its next reconnect.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from protocol import Presence, encode, presence_topic, status_topic

from ._dynsec import (
    Credentials,
    DynSecAdmin,
    DynSecError,
    agent_client_commands,
    client_command,
    new_password,
    role_command,
)
from ._errors import BrokerError
from ._roles import (
    ADMIN_ROLE,
    Role,
    admin_acls,
    agent_role,
    agent_role_name,
    agent_username,
    debug_role,
    debug_role_name,
    debug_send_username,
    debug_username,
    doctor_username,
    parse_agent_username,
)

log = logging.getLogger(__name__)


class AlreadyProvisioned(BrokerError):
    """The login (or its role) exists already; revoke it first."""


class NotProvisioned(BrokerError):
    """No such login."""


@dataclass(frozen=True)
class ProvisionedAgent:
    branch_id: str
    agent_id: str
    username: str
    enabled: bool


def _missing(exc: DynSecError) -> bool:
    return "not found" in exc.error.lower()


def _exists(exc: DynSecError) -> bool:
    return "already exists" in exc.error.lower()


class Provisioner:
    """Lifecycle of agent and debug logins through one connected :class:`DynSecAdmin`."""

    def __init__(self, admin: DynSecAdmin) -> None:
        self.admin = admin

    async def _create(
        self, username: str, role: Role, password: str | None = None, *, agent: bool = False
    ) -> Credentials:
        """The role and its logins, each pinned to its own client id: the login itself and its
        companion (the doctor's for an agent, ``:send`` for a debug login), with one password.
        All or nothing: a refusal removes what was made. ``password`` (default: a new one) gives
        the login the same password on every broker."""
        creds = Credentials(username, password or new_password())
        commands = (
            agent_client_commands(role, creds)
            if agent
            else [
                role_command(role),
                client_command(creds, [role.name], clientid=username),
                client_command(
                    Credentials(debug_send_username(username), creds.password),
                    [role.name],
                    clientid=debug_send_username(username),
                ),
            ]
        )
        responses = await self.admin.batch_results(commands)
        errors = [str(r.get("error")) for r in responses if r.get("error")]
        if errors:
            made = [c for c, r in zip(commands, responses, strict=True) if not r.get("error")]
            for command in reversed(made):  # leave nothing half-made behind
                if command["command"] == "createClient":
                    await self.admin.delete_client(command["username"])
                else:
                    await self.admin.delete_role(command["rolename"])
            if any("already exists" in e.lower() for e in errors):
                raise AlreadyProvisioned(f"{username} exists already: revoke it first")
            raise DynSecError(str(commands[0]["command"]), errors[0])
        return creds

    async def _remove(self, username: str, role_name: str, *companions: str) -> bool:
        """Disable (disconnects a live session at once), delete the client, delete the role.
        Missing pieces are skipped, so a half-made login is cleaned up too; False when there
        was nothing at all (companion logins do not count)."""
        found = False
        for login in (username, *companions):
            for step in (self.admin.disable_client, self.admin.delete_client):
                try:
                    await step(login)
                    found = found or login == username
                except DynSecError as exc:
                    if not _missing(exc):
                        raise
        try:
            await self.admin.delete_role(role_name)
            found = True
        except DynSecError as exc:
            if not _missing(exc):
                raise
        return found

    # --- agents ----------------------------------------------------------------------------

    async def add_agent(
        self, branch_id: str, agent_id: str, *, password: str | None = None
    ) -> Credentials:
        """Create the agent's client and its own role; returns the one-time credentials.
        ``password`` (default: a new one) gives the login the same password on every broker."""
        username = agent_username(branch_id, agent_id)
        return await self._create(username, agent_role(branch_id, agent_id), password, agent=True)

    async def rotate_agent(
        self, branch_id: str, agent_id: str, *, password: str | None = None
    ) -> Credentials:
        """A new password; the old one is refused from now on and a live session is dropped.

        A login provisioned by an older release is brought up to date on the way: pinned to its
        client id, given its doctor's login, and its role's reply rule narrowed to its own
        reply topics."""
        creds = Credentials(agent_username(branch_id, agent_id), password or new_password())
        try:
            await self.admin.set_password(creds.username, creds.password)
        except DynSecError as exc:
            if _missing(exc):
                raise NotProvisioned(f"no agent {agent_id!r} in branch {branch_id!r}") from exc
            raise
        await self.upgrade_agent(branch_id, agent_id, password=creds.password)
        # The broker drops the session without its Last Will, so the retained birth would
        # still say "online": say "offline" for it. A session number of now (ms) outranks the
        # dropped session's and is outranked by the agent's next connect.
        await self.ensure_admin_acls()
        offline = Presence(
            state="offline",
            session=time.time_ns() // 1_000_000,
            branch_id=branch_id,
            agent_id=agent_id,
            at=time.time(),
            reason="credentials rotated",
        )
        await self.admin.publish_retained(presence_topic(branch_id, agent_id), encode(offline))
        return creds

    async def revoke_agent(self, branch_id: str, agent_id: str) -> None:
        """Disconnect and delete the agent's login and role, then clear its retained presence
        and status so it disappears from every registry."""
        username = agent_username(branch_id, agent_id)
        found = await self._remove(
            username, agent_role_name(branch_id, agent_id), doctor_username(username)
        )
        await self.ensure_admin_acls()
        for topic in (presence_topic(branch_id, agent_id), status_topic(branch_id, agent_id)):
            await self.admin.publish_retained(topic, b"")
        if not found:
            raise NotProvisioned(f"no agent {agent_id!r} in branch {branch_id!r}")

    async def list_agents(self, branch_id: str | None = None) -> list[ProvisionedAgent]:
        out = []
        for client in await self.admin.list_clients():
            username = str(client.get("username", ""))
            ids = parse_agent_username(username)
            if ids is None or (branch_id is not None and ids[0] != branch_id):
                continue
            enabled = not client.get("disabled", False)
            out.append(ProvisionedAgent(ids[0], ids[1], username, enabled))
        return sorted(out, key=lambda a: (a.branch_id, a.agent_id))

    async def upgrade_agent(
        self, branch_id: str, agent_id: str, *, password: str | None = None
    ) -> None:
        """Bring an agent's login up to this release: its client id pinned, its role granting
        exactly the rules :func:`agent_role` names (old ones removed), its doctor's login (with
        ``password``, the agent's current one, when given)."""
        username = agent_username(branch_id, agent_id)
        role = agent_role(branch_id, agent_id)
        await self.admin.set_client_id(username, username)
        current = await self.admin.get_role(role.name)
        have = {(a.get("acltype"), a.get("topic")) for a in current.get("acls", [])}
        want = {(a.acltype, a.topic) for a in role.acls}
        for acltype, topic in have - want:
            await self.admin.remove_role_acl(role.name, str(acltype), str(topic))
        for acl in role.acls:
            if (acl.acltype, acl.topic) not in have:
                await self.admin.add_role_acl(role.name, acl)
        if password is None:
            return
        doctor = Credentials(doctor_username(username), password)
        try:
            await self.admin.set_password(doctor.username, password)
        except DynSecError as exc:
            if not _missing(exc):
                raise
            await self.admin.create_client(doctor, [role.name], clientid=doctor.username)

    # --- per-branch debug logins -----------------------------------------------------------

    async def add_debug(
        self, branch_id: str, name: str, *, password: str | None = None
    ) -> Credentials:
        """A login for ``mosquitto_pub``/``mosquitto_sub`` limited to one branch."""
        return await self._create(
            debug_username(branch_id, name),
            debug_role(branch_id, debug_role_name(branch_id, name)),
            password,
        )

    async def revoke_debug(self, branch_id: str, name: str) -> None:
        username = debug_username(branch_id, name)
        found = await self._remove(
            username, debug_role_name(branch_id, name), debug_send_username(username)
        )
        if not found:
            raise NotProvisioned(f"no debug login {name!r} in branch {branch_id!r}")

    # --- the admin's own role --------------------------------------------------------------

    async def ensure_admin_acls(self) -> None:
        """Give a broker provisioned by an older release the admin rules revocation needs."""
        role = await self.admin.get_role(ADMIN_ROLE)
        have = {(a.get("acltype"), a.get("topic")) for a in role.get("acls", [])}
        for acl in admin_acls():
            if (acl.acltype, acl.topic) not in have:
                log.info("adding %s %s to role %s", acl.acltype, acl.topic, ADMIN_ROLE)
                await self.admin.add_role_acl(ADMIN_ROLE, acl)
