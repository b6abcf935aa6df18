"""ACL roles of the dynamic-security plugin, defined once for the initial file and for runtime
provisioning.

Mosquitto 2.0's dynamic security has no ``%u``/``%c`` substitution, so every agent gets a role of
its own that names exactly its topics: it may read its own ``req`` topic and write only its own
presence/status and its own reply topics ``pm/v1/{branch}/reply/+/{agent}`` (the topic a reply
arrives on proves which agent sent it). It may also write (and read)
``req/probe`` below its request topic, which nobody else reads or writes: ``printermaster agent
doctor`` sends itself a message through the broker there, a round trip that touches no topic the
cloud or the running agent acts on (the agent subscribes to ``req`` exactly, not ``req/#``).

Every agent and debug login is bound to one client id (the plugin's ``clientid``): a stolen
password cannot connect under another client's id, so it can neither take over another agent's
session nor the API's. The agent's own id is its username; ``printermaster agent doctor`` runs
next to a connected agent under a companion login ``{username}:doctor`` (same password, same
role, its own client id) so it never kicks the agent off; a debug login has a twin
``{username}:send`` for the same reason (``mosquitto_sub`` listens while ``mosquitto_pub``
sends).

Usernames join branch and agent ids with ``:``, a character ids may not hold: with ``.`` (which ids
may hold) branch ``a.b``/agent ``c`` and branch ``a``/agent ``b.c`` would share one login.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from protocol import (
    ALL_PRESENCE,
    ALL_STATUS,
    RELEASE_PREFIX,
    TOPIC_PREFIX,
    agent_reply_pattern,
    branch_release_topic,
    is_valid_id,
    presence_topic,
    probe_topic,
    request_topic,
    status_topic,
    validate_id,
)

ADMIN_ROLE: Final = "pm-admin"
CLOUD_ROLE: Final = "pm-cloud"
DEBUG_ROLE: Final = "pm-debug"
CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/#"


class Acl(NamedTuple):
    acltype: str
    topic: str
    allow: bool = True

    def as_json(self) -> dict[str, Any]:
        return {"acltype": self.acltype, "topic": self.topic, "priority": 0, "allow": self.allow}


class Role(NamedTuple):
    name: str
    acls: tuple[Acl, ...]

    def as_json(self) -> dict[str, Any]:
        return {"rolename": self.name, "acls": [acl.as_json() for acl in self.acls]}


def _read(topic: str) -> tuple[Acl, Acl]:
    return Acl("subscribePattern", topic), Acl("publishClientReceive", topic)


def _write(topic: str) -> Acl:
    return Acl("publishClientSend", topic)


AGENT_USER_PREFIX: Final = "agent:"
DEBUG_USER_PREFIX: Final = "debug:"
DOCTOR_SUFFIX: Final = ":doctor"


def agent_username(branch_id: str, agent_id: str) -> str:
    """The MQTT username (and client id) of an agent: ``agent:{branch}:{agent}``."""
    validate_id(branch_id, "branch id")
    validate_id(agent_id, "agent id")
    return f"{AGENT_USER_PREFIX}{branch_id}:{agent_id}"


def doctor_username(agent_login: str) -> str:
    """The companion login (and client id) ``agent doctor`` uses beside a running agent."""
    return f"{agent_login}{DOCTOR_SUFFIX}"


def parse_agent_username(username: str) -> tuple[str, str] | None:
    """``(branch_id, agent_id)`` of an agent username, or None for any other login."""
    if not username.startswith(AGENT_USER_PREFIX):
        return None
    parts = username[len(AGENT_USER_PREFIX) :].split(":")
    if len(parts) != 2 or not all(is_valid_id(p) for p in parts):
        return None
    return parts[0], parts[1]


def agent_role_name(branch_id: str, agent_id: str) -> str:
    return f"pm-{agent_username(branch_id, agent_id)}"


def agent_role(branch_id: str, agent_id: str) -> Role:
    """Exactly the topics one agent needs, and nothing of any other agent or branch."""
    return Role(
        agent_role_name(branch_id, agent_id),
        (
            # ``req/#`` matches ``req`` itself and the doctor's ``req/probe``, with no extra rule
            # (every ACL rule makes provisioning slower: the plugin rewrites its whole JSON on
            # every command). Only the cloud writes ``req``; the agent writes only ``req/probe``.
            *_read(f"{request_topic(branch_id, agent_id)}/#"),
            _write(presence_topic(branch_id, agent_id)),
            _write(status_topic(branch_id, agent_id)),
            _write(agent_reply_pattern(branch_id, agent_id)),
            _write(probe_topic(branch_id, agent_id)),
            # Signed releases (docs/updates.md): the branch's pin and the channels' manifests,
            # read-only. Its printer configuration (``req/config``) is covered by ``req/#``.
            *_read(branch_release_topic(branch_id)),
            *_read(f"{RELEASE_PREFIX}/+"),
        ),
    )


def cloud_role() -> Role:
    """API instances: send requests to every agent, read every presence, status and reply."""
    return Role(
        CLOUD_ROLE,
        (
            _write(f"{TOPIC_PREFIX}/+/agents/+/req"),
            *_read(ALL_PRESENCE),
            *_read(ALL_STATUS),
            *_read(f"{TOPIC_PREFIX}/+/reply/+/+"),
            _write(f"{TOPIC_PREFIX}/+/agents/+/req/config"),
            _write(f"{TOPIC_PREFIX}/+/release"),
            _write(f"{RELEASE_PREFIX}/+"),
        ),
    )


def debug_username(branch_id: str, name: str) -> str:
    """The MQTT username of a per-branch debug login: ``debug:{branch}:{name}``."""
    return f"{DEBUG_USER_PREFIX}{validate_id(branch_id, 'branch id')}:{validate_id(name, 'name')}"


def debug_send_username(debug_login: str) -> str:
    """A debug login's twin for sending (same password and role, its own client id): with every
    login bound to one client id, ``mosquitto_sub`` and ``mosquitto_pub`` need one each."""
    return f"{debug_login}:send"


def debug_role_name(branch_id: str, name: str) -> str:
    return f"pm-{debug_username(branch_id, name)}"


def debug_role(branch_id: str = "+", name: str = DEBUG_ROLE) -> Role:
    """Troubleshooting with ``mosquitto_pub``/``mosquitto_sub``: send requests in one branch (or
    all, for the test suite's own login only), read that branch's presence and status and the
    replies addressed to ``debug`` (``reply/debug/{agent}``)."""
    if branch_id != "+":
        validate_id(branch_id, "branch id")
    base = f"{TOPIC_PREFIX}/{branch_id}"
    return Role(
        name,
        (
            _write(f"{base}/agents/+/req"),
            *_read(f"{base}/agents/+/presence"),
            *_read(f"{base}/agents/+/status"),
            *_read(f"{base}/reply/debug/+"),
        ),
    )


def admin_acls() -> tuple[Acl, ...]:
    return (
        _write(CONTROL_TOPIC),
        *_read(CONTROL_TOPIC),
        # Revoking an agent clears its retained presence and status (empty retained payloads),
        # so it disappears from every registry. The admin can grant itself anything through the
        # control topic anyway; these two rules add no power, only say what it uses.
        _write(ALL_PRESENCE),
        _write(ALL_STATUS),
    )


def admin_role() -> Role:
    """Provisioning through the plugin's control topic, and clearing a revoked agent's
    retained presence/status; it reads no PrinterMaster topic."""
    return Role(ADMIN_ROLE, admin_acls())
