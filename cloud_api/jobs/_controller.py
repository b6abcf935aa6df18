"""HTTP routes for jobs (thin: the service holds the logic)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from protocol import DecodeError, ErrorCode

from .._auth import principal_of
from .._errors import ApiError
from ..store import JobState
from ._models import JobPage, JobView, SubmitJob, job_view
from ._service import JobService

_submit = msgspec.json.Decoder(SubmitJob)


def decode_submit(body: bytes) -> SubmitJob:
    from protocol import decode_error

    try:
        return _submit.decode(body)
    except msgspec.DecodeError as exc:
        error: DecodeError = decode_error("invalid job", exc)
        raise ApiError(ErrorCode.INVALID_REQUEST, error.message, field=error.path) from None


class JobsController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @post("/", status_code=202, summary="Submit a print job")
    async def submit(
        self,
        request: Request[Any, Any, Any],
        job_service: JobService,
        idempotency_key: Annotated[
            str | None, Parameter(header="Idempotency-Key", max_length=200)
        ] = None,
    ) -> Response[JobView]:
        """Store the job and send it to its agent (or queue it until the agent is back).

        Body: ``{"branch_id", "printer_id", "content": {document|raw}, "copies", "expire_after"}``.
        With ``Idempotency-Key``, the same key and body (compared as decoded JSON: spacing and
        key order do not matter) within 24 h return the same job (status 200) and a different
        body is 409; a job that ended failed on a printer condition or a retryable error, or
        expired, is tried again as a new job (202, ``retry_of`` names the old one). Invalid
        content is 422 naming the field."""
        body = await request.body()
        submitted = decode_submit(body)
        job, created = await job_service.submit(principal_of(request), submitted, idempotency_key)
        timeline = await job_service.timeline(job.id)
        return Response(
            job_view(job, timeline),
            status_code=202 if created else 200,
            headers={"Location": f"/v1/jobs/{job.id}"},
        )

    @get("/{job_id:str}", summary="A job with its timeline")
    async def get_job(
        self, request: Request[Any, Any, Any], job_id: str, job_service: JobService
    ) -> JobView:
        job = await job_service.get(principal_of(request), job_id)
        return job_view(job, await job_service.timeline(job.id))

    @get("/", summary="List jobs, newest first")
    async def list_jobs(
        self,
        request: Request[Any, Any, Any],
        job_service: JobService,
        branch_id: str | None = None,
        job_state: Annotated[JobState | None, Parameter(query="state")] = None,
        after: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    ) -> JobPage:
        principal = principal_of(request)
        branches: list[str] | None
        if branch_id is not None:
            branches = [branch_id] if principal.may_see(branch_id) else []
        else:
            branches = None if principal.branches is None else sorted(principal.branches)
        jobs = await job_service.store.list_jobs(
            branches=branches, state=job_state, after=after, limit=limit
        )
        return JobPage(
            jobs=[job_view(j) for j in jobs], next_after=jobs[-1].id if len(jobs) == limit else None
        )

    @delete("/{job_id:str}", status_code=200, summary="Cancel a job that has not started printing")
    async def cancel(
        self, request: Request[Any, Any, Any], job_id: str, job_service: JobService
    ) -> JobView:
        job = await job_service.cancel(principal_of(request), job_id)
        return job_view(job, await job_service.timeline(job.id))

    @get("/{job_id:str}/events", summary="Server-Sent Events: every state change until the end")
    async def events(
        self, request: Request[Any, Any, Any], job_id: str, job_service: JobService
    ) -> ServerSentEvent:
        principal = principal_of(request)
        await job_service.get(principal, job_id)  # 404 before the stream starts

        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            index = 0
            async for event in job_service.events(principal, job_id):
                yield ServerSentEventMessage(
                    data=msgspec.json.encode(event).decode(), event="state", id=str(index)
                )
                index += 1

        return ServerSentEvent(stream())
