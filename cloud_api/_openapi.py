"""The OpenAPI document says what the API answers: every error status in the one error shape,
429 with ``Retry-After``, the TOML of the provisioning routes and the event stream of a job.

Litestar documents each route's success and a generic 400 of its own shape; the errors come from
services and middleware (:mod:`._errors`) that it cannot see. This fills them in once, after the
document is built, so clients generated from it (and schemathesis) know every answer.
"""

from __future__ import annotations

from typing import Final

from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)

from protocol import ErrorCode

from ._errors import HTTP_STATUS

_ERROR_REF: Final = "#/components/schemas/ErrorResponse"
_STRING = Schema(type=OpenAPIType.STRING)
_NULLABLE_STRING = Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL])

#: Error statuses any /v1 route may answer (auth, rate limit, ids, bodies, the broker).
_V1_ERRORS: Final = {
    400: "The body is not JSON, or not UTF-8",
    401: "Missing, wrong or revoked bearer token (``WWW-Authenticate: Bearer``)",
    403: "An admin-only route called with a dashboard API key",
    404: "No such branch, printer, agent, job or key (or one the caller may not see)",
    409: "Idempotency-Key reused with another body; a cancel too late; a printer or agent "
    "that exists already",
    413: "Request body over max_body_bytes",
    422: "Invalid request, or the printer's own failure (PAPER_OUT, COVER_OPEN, ...)",
    429: "Over the rate of the API key or of the printer; retry after ``Retry-After`` seconds",
    503: "Agent offline or broker unavailable (answered at once)",
    504: "The agent did not accept, or did not finish, in time",
}

#: Routes whose success is not JSON.
_MEDIA: Final = {
    ("post", "/v1/branches/{branch_id}/agents"): "application/toml",
    ("post", "/v1/branches/{branch_id}/agents/{agent_id}/rotate-credentials"): "application/toml",
    ("get", "/v1/jobs/{job_id}/events"): "text/event-stream",
    ("get", "/v1/events"): "text/event-stream",
}


def _error_schemas() -> dict[str, Schema]:
    body = Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "code": Schema(type=OpenAPIType.STRING, enum=[c.value for c in ErrorCode]),
            "message": _STRING,
            "retryable": Schema(type=OpenAPIType.BOOLEAN),
            "job_id": _NULLABLE_STRING,
            "field": _NULLABLE_STRING,
        },
        required=["code", "message", "retryable"],
    )
    return {
        "ErrorResponse": Schema(
            type=OpenAPIType.OBJECT,
            properties={"error": body},
            required=["error"],
            description="Every error: its code, a message, whether retrying may help",
        )
    }


def _error(description: str, status: int) -> OpenAPIResponse:
    headers = None
    if status == 429:
        headers = {"Retry-After": OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER))}
    elif status == 401:
        headers = {"WWW-Authenticate": OpenAPIHeader(schema=_STRING)}
    return OpenAPIResponse(
        description=description,
        headers=headers,  # type: ignore[arg-type]
        content={"application/json": OpenAPIMediaType(schema=Reference(ref=_ERROR_REF))},
    )


def complete_openapi(document: OpenAPI) -> OpenAPI:
    """Add the error responses and the non-JSON media types to ``document`` (in place)."""
    assert set(_V1_ERRORS) >= set(HTTP_STATUS.values()) - {500, 502}, "an error status is missing"
    components = document.components
    if isinstance(components, list) or components is None:
        components = document.components = Components()
    components.schemas = {**(components.schemas or {}), **_error_schemas()}
    for path, item in (document.paths or {}).items():
        for method in ("get", "post", "put", "patch", "delete"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            responses = operation.responses = dict(operation.responses or {})
            if path.startswith("/v1/"):
                for status, description in _V1_ERRORS.items():
                    responses[str(status)] = _error(description, status)
            elif path == "/readyz":  # not ready: the same report, 503
                ok = responses.get("200")
                if isinstance(ok, OpenAPIResponse):
                    responses["503"] = OpenAPIResponse(
                        description="Not ready: a named check failed", content=ok.content
                    )
            media = _MEDIA.get((method, path))
            if media is not None:
                for status, response in responses.items():
                    if status.startswith("2") and isinstance(response, OpenAPIResponse):
                        response.content = {media: OpenAPIMediaType(schema=_STRING)}
    return document
