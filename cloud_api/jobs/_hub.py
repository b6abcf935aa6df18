"""In-process notification of job changes, for waiting callers and SSE streams.

A watcher registers before it reads the store, so no change between the read and the wait is
missed; after a wake-up it reads the store again. Streams also poll on a timeout, which keeps
them correct when another API instance applied the change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator


class JobHub:
    def __init__(self) -> None:
        self._watchers: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def notify(self, job_id: str) -> None:
        for event in self._watchers.get(job_id, ()):
            event.set()

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set on every change of ``job_id`` while the block runs (clear it yourself)."""
        event = asyncio.Event()
        watchers = self._watchers[job_id]
        watchers.add(event)
        try:
            yield event
        finally:
            watchers.discard(event)
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
