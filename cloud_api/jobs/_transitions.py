"""Transitions this instance applies: one conditional update in the store each, then the
bookkeeping every change needs (observer, in-flight registry, waiters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..store import JobEvent, JobRecord, JobState
from ._core import Core


@dataclass(frozen=True, slots=True)
class Transitions:
    core: Core

    async def move(
        self,
        job_id: str,
        to: JobState,
        allowed: set[JobState],
        cause: str,
        *,
        in_branch: str | None = None,
        **fields: Any,
    ) -> JobRecord | None:
        """The job as the transition left it; None when it was in no allowed state."""
        job = await self.core.store.advance(
            job_id, to, allowed, cause, in_branch=in_branch, **fields
        )
        if job is not None:
            self.changed(job_id, to, job)
        return job

    def changed(
        self, job_id: str, to: JobState, job: JobRecord, timeline: list[JobEvent] | None = None
    ) -> None:
        """Bookkeeping after a transition this instance applied; waiters hear of it."""
        self.core.observer.changed(job)
        self.core.flights.moved(job_id, to)
        self.core.flights.notify(job_id, job, timeline)
