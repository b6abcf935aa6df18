"""API errors and the one place where they become HTTP statuses.

Exception tree::

    ApiError            a typed failure with an ErrorCode, a message and the job id if any

Services raise :class:`ApiError`; :func:`error_response` (registered as the app's exception
handler) picks the status from :data:`HTTP_STATUS` and renders the same body shape for every
error, Litestar's own (404 route, 413 body, 400 validation) included.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Final

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

from protocol import RETRYABLE, ErrorCode

log = logging.getLogger("cloud_api")

HTTP_STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.UNKNOWN_METHOD: 502,
    ErrorCode.UNSUPPORTED_VERSION: 502,
    ErrorCode.PRINTER_NOT_FOUND: 404,
    ErrorCode.PRINTER_OFFLINE: 422,
    ErrorCode.PAPER_OUT: 422,
    ErrorCode.COVER_OPEN: 422,
    ErrorCode.PRINTER_ERROR: 422,
    ErrorCode.EXPIRED: 422,
    ErrorCode.OUTCOME_UNKNOWN: 422,
    ErrorCode.AGENT_OFFLINE: 503,
    ErrorCode.AGENT_UNREACHABLE: 504,
    ErrorCode.PRINT_TIMEOUT: 504,
    ErrorCode.BROKER_UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
    ErrorCode.CONFIG_INVALID: 422,
    ErrorCode.UPDATE_REFUSED: 422,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.CONFLICT: 409,
    ErrorCode.CANCELLED: 409,
    ErrorCode.RATE_LIMITED: 429,
}

_CODE_FOR_STATUS: Final[dict[int, ErrorCode]] = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.NOT_FOUND,
    409: ErrorCode.CONFLICT,
    429: ErrorCode.RATE_LIMITED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    422: ErrorCode.INVALID_REQUEST,
}


class ApiError(Exception):
    """A failure a caller should see, with its typed code."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        job_id: str | None = None,
        field: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.job_id = job_id
        self.field = field
        #: whether sending the same request again is safe and may succeed; by default what the
        #: code says (protocol.RETRYABLE), overridden where this case knows better (a 504 that
        #: cannot rule out that the job still prints is not retryable)
        self.retryable = code in RETRYABLE if retryable is None else retryable
        #: seconds the caller should wait (``Retry-After``), for RATE_LIMITED
        self.retry_after = retry_after

    @property
    def status_code(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


class ErrorBody(msgspec.Struct, kw_only=True, frozen=True):
    code: ErrorCode
    message: str
    retryable: bool
    job_id: str | None = None
    #: For invalid requests: where in the body, msgspec style (``$.content.blocks[3].size``).
    field: str | None = None


class ErrorResponse(msgspec.Struct, kw_only=True, frozen=True):
    error: ErrorBody


def _body(
    code: ErrorCode,
    message: str,
    job_id: str | None,
    field: str | None = None,
    retryable: bool | None = None,
) -> ErrorResponse:
    return ErrorResponse(
        error=ErrorBody(
            code=code,
            message=message,
            retryable=code in RETRYABLE if retryable is None else retryable,
            job_id=job_id,
            field=field,
        )
    )


def error_response(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    """Exception handler for the whole app."""
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        status = exc.status_code
        body = _body(exc.code, exc.message, exc.job_id, exc.field, exc.retryable)
        if exc.code is ErrorCode.UNAUTHORIZED:
            headers["WWW-Authenticate"] = "Bearer"
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        code = _CODE_FOR_STATUS.get(status, ErrorCode.INTERNAL)
        message = exc.detail
        extra = getattr(exc, "extra", None)
        if extra:
            message = f"{message}: {extra}"
        body = _body(code, message, None)
        headers.update(exc.headers or {})
    elif isinstance(exc, RecursionError | UnicodeDecodeError):
        # Litestar's JSON body decoding lets these two through untranslated: msgspec refuses
        # JSON nested deeper than the recursion limit (``[[[[...``) with RecursionError, and
        # bytes that are not UTF-8 raise UnicodeDecodeError. A hostile body, not our bug.
        message = (
            "request body nested too deeply"
            if isinstance(exc, RecursionError)
            else "request body is not valid UTF-8"
        )
        status, body = 400, _body(ErrorCode.INVALID_REQUEST, message, None)
    else:
        log.exception("unhandled error", exc_info=exc)
        status, body = 500, _body(ErrorCode.INTERNAL, "internal error", None)
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)
