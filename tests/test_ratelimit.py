"""Token buckets and bounded logging, on a clock the test moves."""

from __future__ import annotations

import logging

import pytest

from cloud_api._errors import ApiError
from cloud_api._ratelimit import BoundedLog, RateLimiter
from protocol import ErrorCode


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_grants_its_burst_then_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, what="printer", clock=clock)
    assert [limiter.wait(("p",)) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait(("p",)) == pytest.approx(0.5)  # one token every 0.5 s
    assert limiter.wait("other") == 0.0  # buckets are per key
    clock.now += 0.5
    assert limiter.wait(("p",)) == 0.0
    with pytest.raises(ApiError) as refused:
        limiter.check("p")
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert refused.value.retry_after == pytest.approx(0.5)
    assert limiter.refused == 1


def test_buckets_stay_bounded_and_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(1.0, 1, what="key", max_keys=100, clock=Clock())
    for i in range(1000):
        limiter.wait(f"k{i}")
    assert len(limiter._buckets) == 100
    off = RateLimiter(0.0, 1, what="key")
    assert not off.enabled and all(off.wait("k") == 0.0 for _ in range(100))


def test_bounded_log_passes_a_burst_per_template_then_says_how_many_it_held() -> None:
    clock = Clock()
    bounded = BoundedLog(burst=3, interval=10.0, clock=clock)

    def record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("cloud_api.mqtt", level, __file__, 1, msg, None, None)

    passed = [bounded.filter(record("junk from %s")) for _ in range(50)]
    assert passed.count(True) == 3 and bounded.held == 47
    assert bounded.filter(record("another template"))
    assert bounded.filter(record("junk from %s", logging.ERROR))  # errors always pass
    clock.now += 10.0
    next_one = record("junk from %s")
    assert bounded.filter(next_one)
    assert "[47 more like this held back]" in str(next_one.msg)
