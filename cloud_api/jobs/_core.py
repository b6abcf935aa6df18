"""What every part of the job service shares: settings, store, MQTT link, agent registry, the
registry of in-flight work, the observer, and the background tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from .._mqtt import MqttLink
from .._observe import JobObserver
from .._registry import Registry
from .._settings import ApiSettings
from ..store import JobState, Store
from ._inflight import InFlight

log = logging.getLogger("cloud_api.jobs")

S = JobState
IN_FLIGHT = frozenset({S.SENT, S.ACCEPTED, S.WAITING_PRINTER, S.PRINTING})


class Core:
    def __init__(
        self, settings: ApiSettings, store: Store, link: MqttLink, registry: Registry
    ) -> None:
        self.settings = settings
        self.store = store
        self.link = link
        self.registry = registry
        self.flights = InFlight()
        #: job events, stage times and outcomes for the logs and /metrics (set by the app)
        self.observer = JobObserver()
        #: called with (branch, printer) before a job or test print is created; raises to refuse
        #: it (the per-printer rate limit)
        self.admit: Callable[[str, str], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
