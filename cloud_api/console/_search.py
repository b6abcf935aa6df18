"""``GET /v1/jobs/search``: jobs newest first, by branch, printer, state and kind, paged with a
cursor, for the console's job search (and any dashboard).

The query is a read of the job store's own table through its ``_fetch``: a function here
rather than a store method, so the store's write path stays untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get
from litestar.params import Parameter

from .._auth import principal_of
from ..jobs import JobService, JobView
from ..jobs._models import job_view
from ..store import JobRecord, JobState, Store

Kind = Literal["test", "print"]


class JobSearchPage(msgspec.Struct, kw_only=True, frozen=True):
    #: Newest first; each without its timeline (``GET /v1/jobs/{id}`` has it).
    jobs: list[JobView]
    #: Pass as ``cursor`` for the next page; null on the last page.
    next_cursor: str | None = None


async def search_jobs(
    store: Store,
    *,
    branches: Iterable[str] | None,
    printer_id: str | None = None,
    state: JobState | None = None,
    kind: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> list[JobRecord]:
    """Jobs newest first (:meth:`Store.list_jobs`); ``before`` is the last id of the previous
    page. ``branches`` None means every branch; an empty list finds nothing."""
    return await store.list_jobs(
        branches=branches,
        state=state,
        printer_id=printer_id,
        kind=kind,
        after=before,
        limit=limit,
    )


class JobSearchController(Controller):
    path = "/v1/jobs/search"
    tags = ["jobs"]

    @get("/", summary="Search jobs by branch, printer, state and kind, newest first")
    async def search(
        self,
        request: Request[Any, Any, Any],
        job_service: JobService,
        branch_id: Annotated[str | None, Parameter(max_length=200)] = None,
        printer_id: Annotated[str | None, Parameter(max_length=200)] = None,
        job_state: Annotated[JobState | None, Parameter(query="state")] = None,
        kind: Kind | None = None,
        cursor: Annotated[str | None, Parameter(max_length=64)] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> JobSearchPage:
        """Only branches the caller may see; a branch it may not see finds nothing."""
        principal = principal_of(request)
        branches: list[str] | None
        if branch_id is not None:
            branches = [branch_id] if principal.may_see(branch_id) else []
        else:
            branches = None if principal.branches is None else list(principal.branches)
        jobs = await search_jobs(
            job_service.store,
            branches=branches,
            printer_id=printer_id,
            state=job_state,
            kind=kind,
            before=cursor,
            limit=limit,
        )
        return JobSearchPage(
            jobs=[job_view(j) for j in jobs],
            next_cursor=jobs[-1].id if len(jobs) == limit else None,
        )
