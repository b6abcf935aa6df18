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
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
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


class Registry:
    def __init__(self) -> None:
        #: branch -> agent -> record; branch-first so per-branch views never scan the fleet
        self._branches: dict[str, dict[str, AgentRecord]] = {}
        #: (branch, printer) -> agent id, from the newest presence or status that lists it
        self._printers: dict[tuple[str, str], str] = {}
        #: called with the record whenever an agent announces a new online session
        self.on_online: list[Callable[[AgentRecord], None]] = []

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
        for name in presence.printers:
            self._printers[(branch_id, name)] = agent_id
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
        old_names = {p.name for p in old.printers} if old else set()
        for name in old_names - {p.name for p in status.printers}:
            if self._printers.get((branch_id, name)) == agent_id:
                del self._printers[(branch_id, name)]
        for printer in status.printers:
            self._printers[(branch_id, printer.name)] = agent_id

    def _forget(self, branch_id: str, agent_id: str) -> None:
        agents = self._branches.get(branch_id, {})
        record = agents.pop(agent_id, None)
        if not agents:
            self._branches.pop(branch_id, None)
        if record is not None:
            names = set(record.presence.printers) if record.presence else set()
            names |= {p.name for p in record.status.printers} if record.status else set()
            for name in names:
                if self._printers.get((branch_id, name)) == agent_id:
                    del self._printers[(branch_id, name)]

    def agent(self, branch_id: str, agent_id: str) -> AgentRecord | None:
        return self._branches.get(branch_id, {}).get(agent_id)

    def find_printer(self, branch_id: str, printer: str) -> AgentRecord | None:
        """The agent that serves ``printer`` in ``branch_id``, if any agent ever reported it."""
        agent_id = self._printers.get((branch_id, printer))
        return self.agent(branch_id, agent_id) if agent_id else None

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
