"""The live event feed: job transitions, agents going online/offline and printers changing
condition, for the branches a caller may see, as Server-Sent Events (``GET /v1/events``).

Jobs come from a listener on the job hub (every transition this API instance applies; with
several instances behind a load balancer each feed shows its own instance's transitions).
Agents and printers come from a scan of the presence registry once a second while someone
listens: a scan sees what no message announces (a heartbeat that stops without a Last Will
expires by time alone) and costs nothing on the presence path. A listener that cannot keep up
loses events, never slows the API: its queue is bounded, and it is told with a ``lagged`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

import msgspec

from protocol import ErrorInfo

from .._registry import Liveness, Registry, printer_problems
from ..jobs._models import job_view
from ..store import JobRecord
from ._branches import condition

log = logging.getLogger("cloud_api.console")

EventKind = Literal["job", "agent", "printer", "lagged"]


class FeedEvent(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    kind: EventKind
    #: Server wall-clock time of the event.
    at: float
    branch_id: str = ""
    agent_id: str | None = None
    printer_id: str | None = None
    job_id: str | None = None
    #: ``test`` or ``print`` for a job.
    job_kind: str | None = None
    #: A job's state, an agent's liveness or a printer's condition (ready/warning/down).
    state: str = ""
    previous: str | None = None
    problems: list[str] = []
    error: ErrorInfo | None = None


class Subscription:
    """One listener: its own bounded queue, filtered by what it may see."""

    def __init__(self, may_see: Callable[[str], bool], branch_id: str | None, size: int) -> None:
        self._may_see = may_see
        self._branch_id = branch_id
        self._queue: asyncio.Queue[FeedEvent | None] = asyncio.Queue(size)
        self._lagged = False

    def wants(self, branch_id: str) -> bool:
        return (self._branch_id is None or branch_id == self._branch_id) and self._may_see(
            branch_id
        )

    def put(self, event: FeedEvent | None) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._lagged = True
            if event is None:  # the end must get through: make room for it
                self._queue.get_nowait()
                self._queue.put_nowait(None)

    async def next(self, wait: float) -> FeedEvent | Literal[False] | None:
        """The next event; None at the end of the feed; False after ``wait`` s of silence."""
        if self._lagged and self._queue.empty():
            self._lagged = False
            return FeedEvent(kind="lagged", at=time.time())
        try:
            async with asyncio.timeout(wait):
                return await self._queue.get()
        except TimeoutError:
            return False


#: Per agent: its liveness and each printer's (condition, problems).
_Snapshot = dict[tuple[str, str], tuple[str, dict[str, tuple[str, tuple[str, ...]]]]]


class EventFeed:
    def __init__(
        self, registry: Registry, *, scan_interval: float = 1.0, queue_size: int = 1000
    ) -> None:
        self.registry = registry
        self.scan_interval = scan_interval
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._baseline: _Snapshot | None = None
        self._scanner: asyncio.Task[None] | None = None

    # --- sources ---------------------------------------------------------------------------

    def on_job(self, job: JobRecord) -> None:
        """The job hub's listener: called on every transition this instance applies."""
        if not self._subscribers:
            return
        try:
            view = job_view(job)
            self._publish(
                FeedEvent(
                    kind="job",
                    at=job.updated_at,
                    branch_id=job.branch_id,
                    agent_id=job.agent_id,
                    printer_id=job.printer_id,
                    job_id=job.id,
                    job_kind=job.kind,
                    state=job.state.value,
                    error=view.error,
                )
            )
        except Exception:  # the feed must never break a transition
            log.exception("event feed: job %s not announced", job.id)

    def _snapshot(self) -> _Snapshot:
        """Each agent's liveness and each printer's condition and problems, nothing more: this
        runs every second over the whole fleet while someone listens."""
        now = time.monotonic()
        snapshot: _Snapshot = {}
        for branch_id in self.registry.branches():
            for record in self.registry.branch_agents(branch_id):
                state = record.liveness(now)
                online = state is Liveness.ONLINE
                printers: dict[str, tuple[str, tuple[str, ...]]] = {}
                if record.status is not None:
                    for p in record.status.printers:
                        problems = tuple(printer_problems(p, online))
                        printers[p.name] = (condition(problems), problems)
                snapshot[(branch_id, record.agent_id)] = (state.value, printers)
        return snapshot

    def scan(self) -> None:
        """Compare the registry with the last scan; announce what changed."""
        current = self._snapshot()
        previous, self._baseline = self._baseline, current
        if previous is None:
            return
        at = time.time()
        for (branch_id, agent_id), (state, printers) in current.items():
            old_state, old_printers = previous.get((branch_id, agent_id), ("unknown", {}))
            if state != old_state:
                self._publish(
                    FeedEvent(
                        kind="agent",
                        at=at,
                        branch_id=branch_id,
                        agent_id=agent_id,
                        state=state,
                        previous=old_state,
                    )
                )
            for name, (state_now, problems) in printers.items():
                old = old_printers.get(name)
                if old is None or old != (state_now, problems):
                    self._publish(
                        FeedEvent(
                            kind="printer",
                            at=at,
                            branch_id=branch_id,
                            agent_id=agent_id,
                            printer_id=name,
                            state=state_now,
                            previous=old[0] if old else None,
                            problems=list(problems),
                        )
                    )
        for branch_id, agent_id in previous.keys() - current.keys():
            self._publish(
                FeedEvent(
                    kind="agent",
                    at=at,
                    branch_id=branch_id,
                    agent_id=agent_id,
                    state="removed",
                    previous=previous[(branch_id, agent_id)][0],
                )
            )

    def _publish(self, event: FeedEvent) -> None:
        for subscriber in self._subscribers:
            if subscriber.wants(event.branch_id):
                subscriber.put(event)

    async def _scan_forever(self) -> None:
        while True:
            try:
                self.scan()
            except Exception:
                log.exception("event feed: registry scan failed")
            await asyncio.sleep(self.scan_interval)

    # --- listeners -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(
        self, may_see: Callable[[str], bool], branch_id: str | None = None
    ) -> AsyncIterator[Subscription]:
        """A subscription for as long as the block runs; the registry is scanned meanwhile."""
        subscription = Subscription(may_see, branch_id, self.queue_size)
        self._subscribers.add(subscription)
        if self._scanner is None:
            self.scan()  # the baseline, before the caller hears it is subscribed
            self._scanner = asyncio.create_task(self._scan_forever(), name="event-feed-scan")
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
            if not self._subscribers:
                await self._stop_scanner()

    async def _stop_scanner(self) -> None:
        scanner, self._scanner, self._baseline = self._scanner, None, None
        if scanner is not None:
            scanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scanner

    async def aclose(self) -> None:
        """End every subscription's stream and stop scanning."""
        for subscriber in list(self._subscribers):
            subscriber.put(None)
        await self._stop_scanner()
