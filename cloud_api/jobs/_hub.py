"""In-process notification of job changes, for waiting callers and SSE streams.

A watcher registers before it reads the store, so no change between the read and the wait is
missed. Every change this instance applies is announced with the job as the change left it
(``Watch.job``), so a caller waiting for a stage needs no store read per wake-up; a wait that
hears nothing reads the store on a timeout, which keeps it correct when another API instance
applied the change. A watcher that will answer with the job's timeline (a test print) says
so, and a final change announced to it carries the timeline read in the same store operation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator

from ..store import JobEvent, JobRecord, JobState


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


def _give_up(reached: asyncio.Future[JobRecord | None]) -> None:
    if not reached.done():
        reached.set_result(None)


class JobHub:
    def __init__(self) -> None:
        self._watchers: defaultdict[str, set[Watch]] = defaultdict(set)
        #: Called with the record of every change announced with one (the console's feed).
        self.listeners: list[Callable[[JobRecord], None]] = []

    def notify(
        self, job_id: str, job: JobRecord | None = None, timeline: list[JobEvent] | None = None
    ) -> None:
        """Announce a change of ``job_id``; ``job`` is the record it left, when known, and
        ``timeline`` the job's timeline as it left it, when read with it.

        Changes are announced in commit order (the store resolves its callers in that order),
        so the last record announced is the current one."""
        for watch in self._watchers.get(job_id, ()):
            watch._announce(job, timeline)
        if job is not None:
            for listener in self.listeners:
                listener(job)

    def wants_timeline(self, job_id: str) -> bool:
        """Whether a watcher of ``job_id`` will answer with its timeline."""
        return any(watch.wants_timeline for watch in self._watchers.get(job_id, ()))

    @contextlib.contextmanager
    def watch(self, job_id: str, *, wants_timeline: bool = False) -> Iterator[Watch]:
        """A :class:`Watch` of ``job_id`` for as long as the block runs."""
        watch = Watch(wants_timeline=wants_timeline)
        watchers = self._watchers[job_id]
        watchers.add(watch)
        try:
            yield watch
        finally:
            watchers.discard(watch)
            if not watchers:
                self._watchers.pop(job_id, None)


async def wait_for(event: asyncio.Event, seconds: float) -> bool:
    """Wait for ``event`` at most ``seconds``; clear it; True if it was set."""
    if seconds > 0 and not event.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
    fired = event.is_set()
    event.clear()
    return fired
