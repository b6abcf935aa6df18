"""Who is online, fed by the agents' retained presence and status topics (never by polling).

The rules, evaluated whenever someone asks (so a stale "online" ages out by itself, no timer):

* An agent is online when its newest status heartbeat has not expired (the broker's Message
  Expiry Interval, counted from when the API received it) and its presence of the same session
  says ``online``.
* Session numbers order everything: a presence (typically a Last Will) of an older session than
  the newest birth or status is ignored. When the retained presence was overwritten by such a
  late will, the newer session's live status still counts: an agent publishes status only while
  connected, and its own will carries its own session.
* Without a presence (never born, or the agent was removed) an agent is not online.

Printers belong to agents: by provisioning (the API's provisioning routes) or, for an agent
provisioned otherwise, by its first claim. Owners are persisted in the store and loaded before
the first message (:meth:`Registry.load_owners`), so a restarted API knows every printer even
while the broker is away. An agent that lists a printer owned by another agent of its branch
(in its presence or status) is not believed: the claim is ignored, logged once per agent and
printer, and shown as a problem (:attr:`AgentRecord.refused`); jobs keep going to the owner.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from protocol import (
    AgentStatus,
    DecodeError,
    Presence,
    PrinterState,
    decode_presence,
    decode_status,
)

from ._clock import ClockOffset

log = logging.getLogger("cloud_api.registry")


class Liveness(enum.StrEnum):
    """Why an agent counts as online or not."""

    ONLINE = "online"
    #: The agent said goodbye, or the broker delivered its Last Will.
    OFFLINE = "offline"
    #: No heartbeat within the status expiry (e.g. it died while the broker was down).
    EXPIRED = "expired"
    #: Nothing usable heard yet (no presence, or no status of the current session).
    UNKNOWN = "unknown"


@dataclass(slots=True)
class AgentRecord:
    branch_id: str
    agent_id: str
    presence: Presence | None = None
    status: AgentStatus | None = None
    #: monotonic time after which the status heartbeat counts as stale (None: never expires)
    status_expires: float | None = None
    #: wall-clock time of the last message from this agent
    last_seen: float = 0.0
    #: agent clock minus cloud clock, estimated from live (not retained) messages
    clock: ClockOffset = field(default_factory=ClockOffset)

    @property
    def clock_offset(self) -> float:
        """Agent clock minus cloud clock (s): add it to a cloud time to write a deadline in the
        agent's clock (:mod:`cloud_api._clock` says how it is measured and how wrong it can be)."""
        return self.clock.value()

    #: printers this agent claims that another agent of its branch owns (ignored claims)
    refused: set[str] = field(default_factory=set)

    @property
    def session(self) -> int:
        """The newest session heard of, from the birth/will or the status."""
        return max(
            self.presence.session if self.presence else -1,
            self.status.session if self.status else -1,
        )

    def liveness(self, now: float | None = None) -> Liveness:
        presence, status = self.presence, self.status
        if presence is None:
            return Liveness.UNKNOWN
        if presence.session >= (status.session if status else -1):
            if presence.state == "offline":
                return Liveness.OFFLINE
            if status is None or status.session != presence.session:
                return Liveness.UNKNOWN  # born; the first status follows at once
        # Here the status belongs to the newest session (or is newer than a stale presence).
        if status is None:
            return Liveness.UNKNOWN
        now = time.monotonic() if now is None else now
        if self.status_expires is not None and now >= self.status_expires:
            return Liveness.EXPIRED
        return Liveness.ONLINE

    def online(self, now: float | None = None) -> bool:
        return self.liveness(now) is Liveness.ONLINE

    def printer(self, name: str) -> PrinterState | None:
        if self.status is None:
            return None
        for printer in self.status.printers:
            if printer.name == name:
                return printer
        return None


@dataclass(slots=True, frozen=True)
class Owner:
    agent_id: str
    #: given by provisioning (else learned from the agent's first claim)
    provisioned: bool = False


class Registry:
    def __init__(self) -> None:
        #: branch -> agent -> record; branch-first so per-branch views never scan the fleet
        self._branches: dict[str, dict[str, AgentRecord]] = {}
        #: (branch, printer) -> its owner: provisioned, loaded from the store, or learned
        self._owners: dict[tuple[str, str], Owner] = {}
        #: called with the record whenever an agent announces a new online session
        self.on_online: list[Callable[[AgentRecord], None]] = []
        #: called with (branch, printer, agent, True) when an owner is learned, and with
        #: (..., False) when an agent gives up a printer: the store keeps them
        self.on_owner: list[Callable[[str, str, str, bool], None]] = []

    # --- printer ownership -----------------------------------------------------------------

    def load_owners(self, owners: Iterable[tuple[str, str, Owner]]) -> None:
        """Owners as the store has them (at start, before any message)."""
        for branch_id, printer_id, owner in owners:
            self._owners[(branch_id, printer_id)] = owner

    def set_owner(self, branch_id: str, printer_id: str, owner: Owner | None) -> None:
        """Provisioning's word (``None``: the printer is free again)."""
        key = (branch_id, printer_id)
        if owner is None:
            self._owners.pop(key, None)
        else:
            self._owners[key] = owner
        for record in self.branch_agents(branch_id):
            record.refused.discard(printer_id)

    def owner(self, branch_id: str, printer_id: str) -> Owner | None:
        return self._owners.get((branch_id, printer_id))

    def owned_by(self, branch_id: str, agent_id: str) -> list[str]:
        return [
            p for (b, p), o in self._owners.items() if b == branch_id and o.agent_id == agent_id
        ]

    def _claim(self, record: AgentRecord, names: Iterable[str]) -> None:
        """``record``'s agent says it serves ``names``: learn free printers, refuse the others'."""
        branch_id, agent_id = record.branch_id, record.agent_id
        for name in names:
            owner = self._owners.get((branch_id, name))
            if owner is None:
                owner = self._owners[(branch_id, name)] = Owner(agent_id)
                for listener in self.on_owner:
                    listener(branch_id, name, agent_id, True)
            if owner.agent_id == agent_id:
                continue
            if name not in record.refused:
                record.refused.add(name)
                log.warning(
                    "ignoring agent %s/%s's claim to printer %s: it belongs to agent %s",
                    branch_id,
                    agent_id,
                    name,
                    owner.agent_id,
                )

    def _release_dropped(self, record: AgentRecord, dropped: Iterable[str]) -> None:
        """Printers the agent no longer lists: a learned one is free for another agent."""
        for name in dropped:
            key = (record.branch_id, name)
            owner = self._owners.get(key)
            if owner is not None and owner.agent_id == record.agent_id and not owner.provisioned:
                del self._owners[key]
                for listener in self.on_owner:
                    listener(record.branch_id, name, record.agent_id, False)

    def _record(self, branch_id: str, agent_id: str) -> AgentRecord:
        agents = self._branches.setdefault(branch_id, {})
        record = agents.get(agent_id)
        if record is None:
            record = agents[agent_id] = AgentRecord(branch_id, agent_id)
        return record

    def on_presence(
        self, branch_id: str, agent_id: str, payload: bytes, *, live: bool = True
    ) -> None:
        if not payload:  # retained message cleared: the agent was removed
            self._forget(branch_id, agent_id)
            return
        try:
            presence = decode_presence(payload)
        except DecodeError as exc:
            log.warning("bad presence from %s/%s: %s", branch_id, agent_id, exc.message)
            return
        record = self._record(branch_id, agent_id)
        if presence.session < record.session:
            log.info(
                "ignoring stale %s of session %d for %s/%s (current session %d)",
                presence.state,
                presence.session,
                branch_id,
                agent_id,
                record.session,
            )
            return
        new_session = presence.state == "online" and (
            record.presence is None
            or record.presence.session != presence.session
            or record.presence.state != "online"
        )
        if record.presence is None or record.presence.state != presence.state:
            log.info(
                "agent %s/%s %s (session %d%s)",
                branch_id,
                agent_id,
                presence.state,
                presence.session,
                f", {presence.reason}" if presence.reason else "",
            )
        record.presence = presence
        record.last_seen = time.time()
        self._claim(record, presence.printers)
        if new_session:
            for listener in self.on_online:
                listener(record)
        record.clock.observe(presence.at, record.last_seen, live=live)

    def on_status(
        self,
        branch_id: str,
        agent_id: str,
        payload: bytes,
        expiry_s: float | None,
        *,
        live: bool = True,
    ) -> None:
        if not payload:
            return
        try:
            status = decode_status(payload)
        except DecodeError as exc:
            log.warning("bad status from %s/%s: %s", branch_id, agent_id, exc.message)
            return
        record = self._record(branch_id, agent_id)
        old = record.status
        if old is not None and status.session < old.session:
            return
        expires = time.monotonic() + expiry_s if expiry_s is not None else None
        if (
            old is not None
            and (old.session, old.at) == (status.session, status.at)
            and record.status_expires is not None
        ):
            # The same snapshot again (retained, redelivered after a reconnect): not a new
            # heartbeat, so it must not extend the deadline.
            expires = min(record.status_expires, expires or record.status_expires)
        record.status = status
        record.status_expires = expires
        record.last_seen = time.time()
        record.clock.observe(status.at, record.last_seen, live=live)
        names = [p.name for p in status.printers]
        if old is not None:
            self._release_dropped(record, {p.name for p in old.printers} - set(names))
        record.refused.intersection_update(names)
        self._claim(record, names)

    def _forget(self, branch_id: str, agent_id: str) -> None:
        agents = self._branches.get(branch_id, {})
        agents.pop(agent_id, None)
        if not agents:
            self._branches.pop(branch_id, None)
        # a removed (revoked) agent's printers are free again
        for key, owner in list(self._owners.items()):
            if key[0] == branch_id and owner.agent_id == agent_id:
                del self._owners[key]
                for listener in self.on_owner:
                    listener(branch_id, key[1], agent_id, False)

    def agent(self, branch_id: str, agent_id: str) -> AgentRecord | None:
        return self._branches.get(branch_id, {}).get(agent_id)

    def find_printer(self, branch_id: str, printer: str) -> AgentRecord | None:
        """The agent that owns ``printer`` in ``branch_id``: by provisioning, from the store, or
        the first to report it. An owner not heard from yet (the broker is away) is a record
        without presence: it counts as not online."""
        owner = self._owners.get((branch_id, printer))
        return self._record(branch_id, owner.agent_id) if owner else None

    def agents(self, branch_id: str | None = None) -> list[AgentRecord]:
        if branch_id is not None:
            records = list(self._branches.get(branch_id, {}).values())
        else:
            records = [r for agents in self._branches.values() for r in agents.values()]
        return sorted(records, key=lambda r: (r.branch_id, r.agent_id))

    def branch_agents(self, branch_id: str) -> list[AgentRecord]:
        """A branch's agents, unsorted (for summaries)."""
        return list(self._branches.get(branch_id, {}).values())

    def branches(self) -> set[str]:
        return set(self._branches)

    def __len__(self) -> int:
        return sum(len(agents) for agents in self._branches.values())


class Problem(enum.StrEnum):
    """Something wrong with a printer, as the fleet views count it."""

    AGENT_OFFLINE = "agent_offline"
    PRINTER_OFFLINE = "printer_offline"
    COVER_OPEN = "cover_open"
    PAPER_OUT = "paper_out"
    PAPER_NEAR_END = "paper_near_end"
    LAST_ERROR = "last_error"


#: Problems that stop a printer from printing; the others are warnings.
BLOCKING: frozenset[Problem] = frozenset(
    {Problem.AGENT_OFFLINE, Problem.PRINTER_OFFLINE, Problem.COVER_OPEN, Problem.PAPER_OUT}
)


def printer_problems(printer: PrinterState, agent_online: bool) -> list[Problem]:
    """What is wrong with ``printer``; its state is last known when the agent is offline."""
    problems = []
    if not agent_online:
        problems.append(Problem.AGENT_OFFLINE)
    if not printer.online:
        problems.append(Problem.PRINTER_OFFLINE)
    if printer.cover_open:
        problems.append(Problem.COVER_OPEN)
    if printer.paper == "out":
        problems.append(Problem.PAPER_OUT)
    elif printer.paper == "near_end":
        problems.append(Problem.PAPER_NEAR_END)
    if printer.last_error is not None:
        problems.append(Problem.LAST_ERROR)
    return problems
