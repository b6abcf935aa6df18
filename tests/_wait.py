"""Waiting in tests: one way to poll for a condition, with one deadline and one failure message.

``eventually(check)`` calls ``check()`` every ``interval`` seconds until it returns a truthy
value, and returns that value. ``check`` may also assert: an ``AssertionError`` (or one of the
``ignoring`` exceptions, say ``httpx.TransportError`` while a server starts) counts as "not yet".
When ``timeout`` passes without success, the last ``AssertionError`` is raised again (its message
is the test's own), or else an ``AssertionError`` naming ``what`` and the last value seen.
``check`` always runs at least once, and once more after the deadline, so a slow machine never
fails a condition that holds by the time it is looked at.

``await eventually_async(check)`` is the same on the event loop: ``check`` may be a plain function
or return an awaitable (a coroutine function), and the loop keeps running between tries.

A fixed sleep stays only where a test proves that something does *not* happen within a window
(a duplicate print, a late write); it says so in a comment, and the window is as short as the
thing it waits out.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

What = str | Callable[[], object]


def _failure(
    what: What, timeout: float, last: object, error: BaseException | None
) -> AssertionError:
    if isinstance(error, AssertionError):
        return error
    described = what() if callable(what) else what
    message = f"{described or 'condition'} not met within {timeout} s (last: {last!r})"
    failure = AssertionError(message)
    failure.__cause__ = error
    return failure


def eventually(
    check: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: What = "",
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """``check()``'s first truthy result within ``timeout`` seconds (see the module docstring)."""
    not_yet: tuple[type[BaseException], ...] = (AssertionError, *ignoring)
    deadline = time.monotonic() + timeout
    while True:
        last_try = time.monotonic() >= deadline
        error: BaseException | None = None
        value: T | None = None
        try:
            value = check()
        except not_yet as exc:
            error = exc
        else:
            if value:
                return value
        if last_try:
            raise _failure(what, timeout, value, error)
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


@overload
async def eventually_async(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = ...,  # noqa: ASYNC109 (the same signature as eventually)
    interval: float = ...,
    what: What = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def eventually_async(
    check: Callable[[], T | None],
    *,
    timeout: float = ...,  # noqa: ASYNC109 (the same signature as eventually)
    interval: float = ...,
    what: What = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def eventually_async(
    check: Callable[[], Any],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 (the same signature as eventually)
    interval: float = 0.02,
    what: What = "",
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """:func:`eventually` on the event loop; ``check`` may be a coroutine function."""
    not_yet: tuple[type[BaseException], ...] = (AssertionError, *ignoring)
    deadline = time.monotonic() + timeout
    while True:
        last_try = time.monotonic() >= deadline
        error: BaseException | None = None
        value: Any = None
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except not_yet as exc:
            error = exc
        else:
            if value:
                return value
        if last_try:
            raise _failure(what, timeout, value, error)
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
