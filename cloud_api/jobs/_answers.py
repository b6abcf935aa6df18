"""The HTTP edge of jobs: the one place a job, or a failure on the way to one, becomes an HTTP
answer. Status codes come from :data:`cloud_api._errors.HTTP_STATUS` (by error code); the
services only return jobs and raise typed errors."""

from __future__ import annotations

import msgspec
from litestar import Response

from protocol import ErrorCode, ErrorInfo, PrintResult, ProtocolError, typed_decoder

from .._errors import ApiError
from ..store import JobEvent, JobRecord, JobState
from ._models import JobView, SubmitJob, job_view


class TestPrintOutcome(msgspec.Struct, kw_only=True, frozen=True):
    job_id: str
    status: str
    branch_id: str
    printer_id: str
    agent_id: str | None
    result: PrintResult | None
    #: Milliseconds from submission to each stage the API recorded.
    timings_ms: dict[str, float]


def refused(exc: ProtocolError) -> ApiError:
    """A request the protocol refused (invalid content: 422 naming the field; content over
    its size limit: 413), as the API's typed error."""
    return ApiError(exc.code, exc.message, field=getattr(exc, "path", None))


#: The submitted job, through the protocol's one decode path (content and its size limit
#: included); the HTTP body limit bounds its length.
_decode_submit = typed_decoder(SubmitJob, "job", max_bytes=None)


def decode_submit(body: bytes) -> SubmitJob:
    try:
        submitted: SubmitJob = _decode_submit(body)
    except ProtocolError as exc:
        raise refused(exc) from None
    return submitted


def accepted(job: JobRecord, created: bool, timeline: list[JobEvent]) -> Response[JobView]:
    """A job submitted: 202 when created now, 200 when an Idempotency-Key named it."""
    return Response(
        job_view(job, timeline),
        status_code=202 if created else 200,
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


def test_print_answer(
    job: JobRecord, timeline: list[JobEvent], *, wait: bool
) -> Response[TestPrintOutcome | JobView]:
    """A test print: 202 and the job without ``wait``; else 200 with its result, or the
    typed error its end means."""
    if not wait:
        return Response(job_view(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})
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
            branch_id=job.branch_id,
            printer_id=job.printer_id,
            agent_id=job.agent_id,
            result=view.result,
            timings_ms=timings,
        )
    )
