"""Rate limits: token buckets per API key (every ``/v1`` request) and per printer (every job and
test print), answered with 429 ``RATE_LIMITED`` and ``Retry-After``.

A bucket holds ``burst`` tokens and gains ``rate`` per second; a request takes one. Buckets live
in memory, per API process (the limits are per instance: with N instances a caller gets up to N
times the rate), at most ``max_keys`` of them, the least recently used forgotten first: memory
stays bounded whatever names a caller invents. The admin token is not limited per key (it is
the operator's own); the per-printer limit applies to everyone.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send

from protocol import ErrorCode

from ._auth import principal_of_scope
from ._errors import ApiError


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        what: str,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.what = what
        self.max_keys = max_keys
        self.clock = clock
        #: key -> (tokens, time of the last refill), least recently used first
        self._buckets: collections.OrderedDict[Any, tuple[float, float]] = collections.OrderedDict()
        #: requests refused so far
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def wait(self, key: Any) -> float:
        """Take a token for ``key``: 0.0 when granted, else the seconds until one is there."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def check(self, *key: Any) -> None:
        """Take a token for ``key`` or raise 429 ``RATE_LIMITED`` with the wait."""
        wait = self.wait(key)
        if wait > 0:
            self.refused += 1
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"too many requests for this {self.what}: at most {self.rate:g} per second "
                f"(bursts of {self.burst}); retry in {math.ceil(wait)} s",
                retry_after=wait,
            )


def rate_limited(limiter: RateLimiter) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware after authentication: one token per request from the caller's key."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def limit(scope: Scope, receive: Receive, send: Send) -> None:
            if limiter.enabled and scope["type"] in ("http", "websocket"):
                principal = principal_of_scope(scope)
                if principal is not None and not principal.admin:
                    limiter.check(principal.name)
            await app(scope, receive, send)

        return limit

    return middleware


class BoundedLog(logging.Filter):
    """At most ``burst`` records per message template per ``interval`` seconds pass; the rest are
    counted, and the next record of that template to pass says how many were held back.

    Attached to the loggers that speak of what arrives over MQTT (a junk message, a forged or
    late reply, a bad status), so a flood from one agent costs a few lines, not one per message.
    """

    def __init__(
        self, burst: int = 20, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self.clock = clock
        #: (logger, template) -> [window start, passed in window, held back]
        self._windows: dict[tuple[str, str], list[float]] = {}
        #: records held back so far
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.interval:
            held = int(window[2]) if window is not None else 0
            window = self._windows[key] = [now, 0.0, 0.0]
            if len(self._windows) > 10_000:  # templates are few; never grow without bound
                self._windows.clear()
                self._windows[key] = window
            if held:
                record.msg = f"{record.msg} [{held} more like this held back]"
        if window[1] >= self.burst:
            window[2] += 1
            self.held += 1
            return False
        window[1] += 1
        return True


def bound_logs(*names: str, burst: int = 20, interval: float = 10.0) -> BoundedLog:
    """One :class:`BoundedLog` on each of the named loggers."""
    bounded = BoundedLog(burst, interval)
    for name in names:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, BoundedLog)]:
            logger.removeFilter(old)
        logger.addFilter(bounded)
    return bounded
