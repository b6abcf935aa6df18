"""W3C Trace Context: the ``traceparent`` that follows a job from the HTTP request to the agent
and back.

``traceparent`` is ``00-{trace id: 32 hex}-{parent id: 16 hex}-{flags: 2 hex}``
(https://www.w3.org/TR/trace-context/). The API takes it from the request's ``traceparent``
header (or starts a trace), sends it with the job as the MQTT 5 user property ``traceparent``,
and the agent answers with it in its replies' user property: the trace id is in every log line
either side writes about the job.

The trace id of the work at hand lives in a context variable: an HTTP request or a reply sets
it, tasks started from there inherit it, and the log formatter (:mod:`pmlog`) writes it.
"""

from __future__ import annotations

import contextvars
import random
import re
from collections.abc import Callable
from typing import Any, Final

#: The MQTT 5 user property (and HTTP header) that carries the trace context.
TRACEPARENT: Final = "traceparent"

_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE: Final = "0" * 32
_ZERO_PARENT: Final = "0" * 16

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)


def parse_traceparent(value: str | None) -> str | None:
    """The trace id of a valid ``traceparent``; None for a missing or malformed one."""
    if not value:
        return None
    value = value.strip()
    # version 00 is exactly 55 characters; a later version may append fields after a dash
    if len(value) < 55 or (len(value) > 55 and value[55] != "-"):
        return None
    head = value[:55]
    if _TRACEPARENT.fullmatch(head) is None:
        return None
    version, trace_id, parent_id = head[:2], head[3:35], head[36:52]
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if version == "00" and len(value) != 55:
        return None
    return trace_id


def new_trace_id() -> str:
    """A fresh random trace id (32 hex digits, never all zeros).

    From :mod:`random`, not :func:`os.urandom`: a trace id needs to be unique, not secret, and
    ``os.urandom`` releases the GIL on every call (a hand-over to any other busy thread)."""
    return f"{random.getrandbits(128) | 1:032x}"


def traceparent(trace_id: str) -> str:
    """A ``traceparent`` of ``trace_id`` with a fresh parent (span) id, sampled."""
    return f"00-{trace_id}-{random.getrandbits(64) | 1:016x}-01"


def traceparent_of(properties: Any) -> str | None:
    """The ``traceparent`` user property of a paho ``Properties`` (None when absent)."""
    pairs = getattr(properties, "UserProperty", None)
    if pairs:
        for name, value in pairs:
            if name == TRACEPARENT:
                return str(value)
    return None


def current_trace_id() -> str | None:
    """The trace id of the work at hand (set by :func:`set_trace_id`), if any."""
    return _current.get()


def set_trace_id(trace_id: str | None) -> contextvars.Token[str | None]:
    """Make ``trace_id`` current in this context (and tasks created from it); returns the token
    for :func:`reset_trace_id`."""
    return _current.set(trace_id)


def reset_trace_id(token: contextvars.Token[str | None]) -> None:
    _current.reset(token)


def run_traced(properties: Any, handle: Callable[..., None], *args: Any) -> None:
    """``handle(*args)`` with the trace id of ``properties``' ``traceparent`` (a paho
    ``Properties``) current; tasks it starts keep it."""
    trace_id = parse_traceparent(traceparent_of(properties))
    if trace_id is None:
        handle(*args)
        return
    token = _current.set(trace_id)
    try:
        handle(*args)
    finally:
        _current.reset(token)
