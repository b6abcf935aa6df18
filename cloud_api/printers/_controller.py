"""HTTP routes for printers (thin: the job service holds the logic)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.params import Parameter

from protocol import ErrorCode, ErrorInfo, PrintResult

from .._auth import principal_of
from .._errors import ApiError
from ..jobs import JobService, JobView
from ..jobs._models import job_view
from ..store import JobState


class TestPrintOutcome(msgspec.Struct, kw_only=True, frozen=True):
    job_id: str
    status: str
    branch_id: str
    printer_id: str
    agent_id: str | None
    result: PrintResult | None
    #: Milliseconds from submission to each stage the API recorded.
    timings_ms: dict[str, float]


class PrintersController(Controller):
    path = "/v1/branches/{branch_id:str}/printers"
    tags = ["printers"]

    @post("/{printer_id:str}/test", status_code=200, summary="Print a test page")
    async def test_print(
        self,
        request: Request[Any, Any, Any],
        branch_id: str,
        printer_id: str,
        job_service: JobService,
        force: bool = False,
        wait: bool = True,
        idempotency_key: Annotated[
            str | None, Parameter(header="Idempotency-Key", max_length=200)
        ] = None,
    ) -> Response[TestPrintOutcome | JobView]:
        """Send a test page to one printer. A test print is a job like any other
        (``GET /v1/jobs/{job_id}`` shows its timeline).

        With ``wait=true`` (default) the answer is the agent's result: 200, or 404
        ``PRINTER_NOT_FOUND``, 503 ``AGENT_OFFLINE`` (at once), 504 ``AGENT_UNREACHABLE`` (no
        ``accepted`` in time) or ``PRINT_TIMEOUT`` (accepted, no result), 422 for the printer's
        own failure (``PAPER_OUT``, ``COVER_OPEN``, ``PRINTER_OFFLINE``, ...). ``force=true``
        skips the API's check of the cached printer status. With ``wait=false``: 202 and the job.

        A 504 ``AGENT_UNREACHABLE`` with ``retryable: true`` guarantees the page never prints
        (the agent confirmed the cancel); with ``retryable: false`` it may have started before
        its deadline: check the job first. ``Idempotency-Key`` works as for ``POST /v1/jobs``.
        """
        job, timeline = await job_service.test_print(
            principal_of(request),
            branch_id,
            printer_id,
            force=force,
            wait=wait,
            idempotency_key=idempotency_key,
        )
        if not wait:
            return Response(
                job_view(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"}
            )
        view = job_view(job, timeline)
        if job.state is JobState.CANCELLED:
            # cancelled before it printed (the agent confirmed): it never prints, so asking
            # again (same Idempotency-Key: a new attempt) is safe
            raise ApiError(
                ErrorCode.CANCELLED,
                f"test print {job.id} was cancelled before it printed; it never prints",
                job_id=job.id,
                retryable=True,
            )
        if job.state is not JobState.PRINTED:
            error = view.error or ErrorInfo(
                code=ErrorCode.PRINTER_ERROR, message=f"job ended {job.state}"
            )
            raise ApiError(error.code, error.message, job_id=job.id)
        start = job.created_at
        timings = {e.state.value: round((e.at - start) * 1000, 3) for e in view.timeline[1:]}
        return Response(
            TestPrintOutcome(
                job_id=job.id,
                status="printed",
                branch_id=branch_id,
                printer_id=printer_id,
                agent_id=job.agent_id,
                result=view.result,
                timings_ms=timings,
            )
        )
