"""The topic tree, built and parsed in one place.

::

    pm/v1/{branch}/agents/{agent}/req        cloud -> agent   RPC requests (QoS 1)
    pm/v1/{branch}/reply/{requester}/{agent} agent -> cloud   RPC replies (QoS 1)
    pm/v1/{branch}/agents/{agent}/presence   retained birth / Last Will
    pm/v1/{branch}/agents/{agent}/status     retained status snapshot and heartbeat
    pm/v1/{branch}/agents/{agent}/req/probe  agent -> itself  ``agent doctor``'s loopback check

A reply topic names the agent that answers: each agent's broker role may publish only on
``pm/v1/{branch}/reply/+/{agent}``, so the topic a reply arrives on proves which agent sent it.
"""

from __future__ import annotations

import enum
import functools
from typing import Final, NamedTuple

from ._errors import InvalidTopic
from ._ids import is_valid_id, validate_id

TOPIC_PREFIX: Final = "pm/v1"
ALL_PRESENCE: Final = f"{TOPIC_PREFIX}/+/agents/+/presence"
ALL_STATUS: Final = f"{TOPIC_PREFIX}/+/agents/+/status"


class TopicKind(enum.StrEnum):
    REQUEST = "req"
    REPLY = "reply"
    PRESENCE = "presence"
    STATUS = "status"


class Topic(NamedTuple):
    """A parsed topic. ``name`` is the agent id, or the requester id for replies;
    ``agent_id`` is the agent id of every kind (the answering agent for replies)."""

    kind: TopicKind
    branch_id: str
    name: str
    agent_id: str = ""


#: Topics built and parsed are cached: the same few thousand (a few per agent) come back on
#: every message, and checking their ids is most of the cost.
_CACHED: Final = 16_384


@functools.lru_cache(maxsize=_CACHED)
def _agent_topic(branch_id: str, agent_id: str, leaf: str) -> str:
    validate_id(branch_id, "branch id")
    validate_id(agent_id, "agent id")
    return f"{TOPIC_PREFIX}/{branch_id}/agents/{agent_id}/{leaf}"


def request_topic(branch_id: str, agent_id: str) -> str:
    return _agent_topic(branch_id, agent_id, TopicKind.REQUEST)


def presence_topic(branch_id: str, agent_id: str) -> str:
    return _agent_topic(branch_id, agent_id, TopicKind.PRESENCE)


def status_topic(branch_id: str, agent_id: str) -> str:
    return _agent_topic(branch_id, agent_id, TopicKind.STATUS)


def probe_topic(branch_id: str, agent_id: str) -> str:
    """The one topic an agent may both write and read: ``agent doctor`` sends itself a probe
    through the broker here. It sits below the request topic so the agent's one ``req/#`` read
    rule covers it; the agent itself subscribes to ``req`` exactly and never sees a probe.
    Nobody else reads it, and probes are never retained."""
    return f"{request_topic(branch_id, agent_id)}/probe"


@functools.lru_cache(maxsize=_CACHED)
def reply_topic(branch_id: str, requester: str, agent_id: str) -> str:
    """Where ``agent_id`` answers ``requester``: the response topic of a request to that agent.
    The broker lets only that agent publish here."""
    validate_id(branch_id, "branch id")
    validate_id(requester, "requester id")
    validate_id(agent_id, "agent id")
    return f"{TOPIC_PREFIX}/{branch_id}/reply/{requester}/{agent_id}"


def reply_filter(requester: str, branch_id: str = "+", agent_id: str = "+") -> str:
    """Subscription filter for one requester's replies from every branch (or one) and every
    agent (or one)."""
    validate_id(requester, "requester id")
    if branch_id != "+":
        validate_id(branch_id, "branch id")
    if agent_id != "+":
        validate_id(agent_id, "agent id")
    return f"{TOPIC_PREFIX}/{branch_id}/reply/{requester}/{agent_id}"


def agent_reply_pattern(branch_id: str, agent_id: str) -> str:
    """Every reply topic of one agent (any requester): what its broker role may publish."""
    validate_id(branch_id, "branch id")
    validate_id(agent_id, "agent id")
    return f"{TOPIC_PREFIX}/{branch_id}/reply/+/{agent_id}"


_AGENT_LEAVES: Final = {
    TopicKind.REQUEST.value: TopicKind.REQUEST,
    TopicKind.PRESENCE.value: TopicKind.PRESENCE,
    TopicKind.STATUS.value: TopicKind.STATUS,
}


@functools.lru_cache(maxsize=_CACHED)
def parse_topic(topic: str) -> Topic:
    """Parse a concrete topic of the tree; raises :class:`InvalidTopic` for anything else."""
    parts = topic.split("/")
    if len(parts) >= 3 and f"{parts[0]}/{parts[1]}" == TOPIC_PREFIX:
        rest = parts[2:]
        agent_id = ""
        if len(rest) == 4 and rest[1] == "reply":
            kind: TopicKind | None = TopicKind.REPLY
            branch_id, name, agent_id = rest[0], rest[2], rest[3]
        elif len(rest) == 4 and rest[1] == "agents":
            kind = _AGENT_LEAVES.get(rest[3])
            branch_id, name = rest[0], rest[2]
            agent_id = name
        else:
            kind = None
        if (
            kind is not None
            and is_valid_id(branch_id)
            and is_valid_id(name)
            and is_valid_id(agent_id)
        ):
            return Topic(kind, branch_id, name, agent_id)
    raise InvalidTopic(f"not a PrinterMaster topic: {topic[:200]!r}")


# --- remote configuration and releases ------------------------------------------------------
#
#     pm/v1/{branch}/agents/{agent}/req/config   cloud -> agent   retained printer configuration
#     pm/v1/{branch}/release                 cloud -> agents  retained version pin of a branch
#     pm/releases/v1/{channel}               cloud -> agents  retained release manifest

#: Release channels live outside ``pm/v1/{branch}/...``: a channel name can never be read as a
#: branch id, and no branch-scoped ACL rule reaches them.
RELEASE_PREFIX: Final = "pm/releases/v1"


def config_topic(branch_id: str, agent_id: str) -> str:
    """Retained, versioned printer configuration of one agent (only the cloud writes it).

    Below ``req`` like the doctor's probe: the agent's one ``req/#`` read rule covers it (every
    ACL rule slows provisioning down), and the agent, subscribed to ``req`` exactly, never
    mistakes it for a request."""
    return f"{request_topic(branch_id, agent_id)}/config"


def branch_release_topic(branch_id: str) -> str:
    """Retained version pin of a branch: empty, or the signed manifest its agents must run."""
    validate_id(branch_id, "branch id")
    return f"{TOPIC_PREFIX}/{branch_id}/release"


def channel_release_topic(channel: str) -> str:
    """Retained signed release manifest of one channel (``stable``, ``beta``, ...)."""
    validate_id(channel, "channel")
    return f"{RELEASE_PREFIX}/{channel}"
