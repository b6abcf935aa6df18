"""Everything this instance tracks about work in flight, in one registry keyed by job id.

One :class:`Flight` per id with anything in memory, removed as soon as nothing is left:

* watchers (:class:`Watch`): callers waiting for a stage, SSE streams. A watcher registers
  before it reads the store, so no change between the read and the wait is missed. Every change
  this instance applies is announced with the job as the change left it (``Watch.job``), so a
  caller waiting for a stage needs no store read per wake-up; a wait that hears nothing reads
  the store on a timeout, which keeps it correct when another API instance applied the change.
  A watcher that will answer with the job's timeline (a test print) says so, and a final change
  announced to it carries the timeline read in the same store operation;
* an RPC answered in memory (``job.cancel``: its id is the request's correlation data): the
  branch and agent it went to, and a future for its final reply. Removed in ``finally``; a reply
  for an id nobody waits on goes to the store path, where an unknown job is logged and dropped;
* the inbox: replies that arrived while the previous ones were being applied, in order;
* the dispatch bookkeeping: when this instance last published the job's request, and how many
  times the sweeper asked again since the job last changed state.

The store holds the truth; this registry only holds what is worth nothing after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from protocol import Done, Failed, Reply

from ..store import JobEvent, JobRecord, JobState

#: a reply waiting to be applied: (branch it came from, agent, the reply, cloud time received)
Received = tuple[str, str, Reply, float | None]


class Watch:
    """One watcher of one job: ``event`` is set on every change (clear it yourself), ``job`` is
    the job as the latest change announced here left it (``timeline``: the job's timeline as
    that change left it, when it came with it), and :meth:`reach` waits for a change to one of
    a set of states."""

    __slots__ = ("_reached", "_wanted", "event", "job", "timeline", "wants_timeline")

    def __init__(self, *, wants_timeline: bool = False) -> None:
        self.event = asyncio.Event()
        self.job: JobRecord | None = None
        self.timeline: list[JobEvent] | None = None
        self.wants_timeline = wants_timeline
        self._wanted: frozenset[JobState] = frozenset()
        self._reached: asyncio.Future[JobRecord | None] | None = None

    def _announce(self, job: JobRecord | None, timeline: list[JobEvent] | None) -> None:
        if job is not None:
            self.job, self.timeline = job, timeline
            reached = self._reached
            if reached is not None and not reached.done() and job.state in self._wanted:
                reached.set_result(job)
        self.event.set()

    async def reach(self, wanted: frozenset[JobState], seconds: float) -> JobRecord | None:
        """The first record announced from now on whose state is in ``wanted``; None when
        none is within ``seconds``. One future and one timer, however many changes come."""
        loop = asyncio.get_running_loop()
        reached: asyncio.Future[JobRecord | None] = loop.create_future()
        self._reached, self._wanted = reached, wanted
        timer = loop.call_later(seconds, _give_up, reached)
        try:
            return await reached
        finally:
            timer.cancel()
            self._reached = None

    async def changed(self, seconds: float) -> bool:
        """Wait at most ``seconds`` for a change; clear the event; True if one came."""
        event = self.event
        if seconds > 0 and not event.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await event.wait()
        fired = event.is_set()
        event.clear()
        return fired


def _give_up(reached: asyncio.Future[JobRecord | None]) -> None:
    if not reached.done():
        reached.set_result(None)


@dataclass(slots=True)
class Rpc:
    """A request answered in memory: only its branch's and agent's replies count."""

    job_id: str
    branch_id: str
    agent_id: str
    final: asyncio.Future[Done | Failed]


@dataclass(slots=True)
class Flight:
    """What this instance holds in memory about one job id."""

    watchers: set[Watch] = field(default_factory=set)
    rpc: Rpc | None = None
    #: replies waiting to be applied; None when no task is applying them
    inbox: deque[Received] | None = None
    #: monotonic time this instance last published the job's request
    published_at: float | None = None
    #: times the sweeper asked again since the job last changed state
    resends: int = 0

    def idle(self) -> bool:
        return not (self.watchers or self.rpc or self.inbox is not None or self.published_at)


class InFlight:
    """The registry of in-flight work (see the module docstring)."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}
        #: Called with the record of every change announced with one (the console's feed).
        self.listeners: list[Callable[[JobRecord], None]] = []

    def __len__(self) -> int:
        return len(self._flights)

    def _flight(self, job_id: str) -> Flight:
        flight = self._flights.get(job_id)
        if flight is None:
            flight = self._flights[job_id] = Flight()
        return flight

    def _settle(self, job_id: str) -> None:
        flight = self._flights.get(job_id)
        if flight is not None and flight.idle() and not flight.resends:
            del self._flights[job_id]

    # --- watchers ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def watch(self, job_id: str, *, wants_timeline: bool = False) -> Iterator[Watch]:
        """A :class:`Watch` of ``job_id`` for as long as the block runs."""
        watch = Watch(wants_timeline=wants_timeline)
        self._flight(job_id).watchers.add(watch)
        try:
            yield watch
        finally:
            self._flight(job_id).watchers.discard(watch)
            self._settle(job_id)

    def notify(
        self, job_id: str, job: JobRecord | None = None, timeline: list[JobEvent] | None = None
    ) -> None:
        """Announce a change of ``job_id``; ``job`` is the record it left, when known, and
        ``timeline`` the job's timeline as it left it, when read with it.

        Changes are announced in commit order (the store resolves its callers in that order),
        so the last record announced is the current one."""
        flight = self._flights.get(job_id)
        for watch in flight.watchers if flight is not None else ():
            watch._announce(job, timeline)
        if job is not None:
            for listener in self.listeners:
                listener(job)

    def wants_timeline(self, job_id: str) -> bool:
        """Whether a watcher of ``job_id`` will answer with its timeline."""
        flight = self._flights.get(job_id)
        return flight is not None and any(w.wants_timeline for w in flight.watchers)

    # --- RPCs answered in memory -------------------------------------------------------------

    @contextlib.contextmanager
    def expect(self, rpc_id: str, job_id: str, branch_id: str, agent_id: str) -> Iterator[Rpc]:
        """Wait in memory for the final reply to request ``rpc_id`` (about ``job_id``)."""
        rpc = Rpc(job_id, branch_id, agent_id, asyncio.get_running_loop().create_future())
        self._flight(rpc_id).rpc = rpc
        try:
            yield rpc
        finally:
            self._flight(rpc_id).rpc = None
            self._settle(rpc_id)

    def rpc(self, rpc_id: str) -> Rpc | None:
        flight = self._flights.get(rpc_id)
        return flight.rpc if flight is not None else None

    # --- the inbox ---------------------------------------------------------------------------

    def queue_reply(self, job_id: str, received: Received) -> bool:
        """Queue a reply; True when no task applies the job's replies yet (start one)."""
        flight = self._flight(job_id)
        if flight.inbox is not None:
            flight.inbox.append(received)
            return False
        flight.inbox = deque([received])
        return True

    def take_replies(self, job_id: str) -> list[Received]:
        """The replies waiting, oldest first; [] ends the job's inbox."""
        flight = self._flights.get(job_id)
        if flight is None or not flight.inbox:
            if flight is not None:
                flight.inbox = None
                self._settle(job_id)
            return []
        replies = list(flight.inbox)
        flight.inbox.clear()
        return replies

    def applying(self) -> bool:
        """Whether replies are waiting or being applied for any job."""
        return any(flight.inbox is not None for flight in self._flights.values())

    def drop_inbox(self, job_id: str) -> None:
        flight = self._flights.get(job_id)
        if flight is not None:
            flight.inbox = None
            self._settle(job_id)

    # --- dispatch bookkeeping ----------------------------------------------------------------

    def published(self, job_id: str) -> None:
        self._flight(job_id).published_at = time.monotonic()

    def last_published(self, job_id: str) -> float | None:
        flight = self._flights.get(job_id)
        return flight.published_at if flight is not None else None

    def resends(self, job_id: str) -> int:
        flight = self._flights.get(job_id)
        return flight.resends if flight is not None else 0

    def resent(self, job_id: str) -> None:
        self._flight(job_id).resends += 1

    def forget_resends(self, job_id: str) -> None:
        flight = self._flights.get(job_id)
        if flight is not None:
            flight.resends = 0
            self._settle(job_id)

    def moved(self, job_id: str, to: JobState) -> None:
        """The job changed state here: the sweeper's count starts over, and a job no longer
        ``sent`` forgets when it was published."""
        flight = self._flights.get(job_id)
        if flight is not None:
            flight.resends = 0
            if to is not JobState.SENT:
                flight.published_at = None
            self._settle(job_id)

    def keep_only(self, open_ids: set[str], read_at: float) -> None:
        """Forget the dispatch bookkeeping of jobs no longer in flight anywhere (they ended on
        another instance, or a reply was applied meanwhile): ``open_ids`` were in flight when
        the store was read, at monotonic time ``read_at`` (a job published since is kept)."""
        for job_id, flight in list(self._flights.items()):
            if job_id in open_ids:
                continue
            if flight.published_at is not None and flight.published_at < read_at:
                flight.published_at = None
            flight.resends = 0
            self._settle(job_id)
