"""HTTP routes for printers (thin: the job service holds the logic)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, post
from litestar.params import Parameter

from .._auth import principal_of
from ..jobs import JobService, JobView
from ..jobs._answers import TestPrintOutcome, test_print_answer


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
        return test_print_answer(job, timeline, wait=wait)
