"""The tests' one way to wait (tests/_wait.py): what it returns, what it raises, and when."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from ._wait import eventually, eventually_async


def test_returns_the_first_truthy_value() -> None:
    calls = itertools.count(1)
    assert eventually(lambda: (n := next(calls)) >= 3 and n, interval=0.001) == 3


def test_an_assertion_means_not_yet_and_the_last_one_is_raised_at_the_deadline() -> None:
    calls = itertools.count(1)

    def check() -> bool:
        n = next(calls)
        assert n > 10**9, f"try {n}"
        return True

    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"^try \d+") as caught:
        eventually(check, timeout=0.2, interval=0.01)
    assert 0.2 <= time.monotonic() - started < 2
    tries = int(str(caught.value).split()[1])
    assert tries > 2  # tried again until the deadline, and the last message is raised


def test_a_falsy_value_at_the_deadline_names_what_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"^the queue empty not met within 0.05 s \(last: 0\)"):
        eventually(lambda: 0, timeout=0.05, what="the queue empty")
    with pytest.raises(AssertionError, match=r"^depth 3 not met within 0.05 s \(last: \[\]\)"):
        eventually(lambda: [], timeout=0.05, what=lambda: "depth 3")


def test_other_errors_end_the_wait_at_once_unless_ignored() -> None:
    started = time.monotonic()
    with pytest.raises(KeyError):
        eventually(lambda: {}["missing"], timeout=5)
    assert time.monotonic() - started < 1
    tries = itertools.count(1)

    def flaky() -> str:
        if next(tries) < 3:
            raise ConnectionRefusedError("not listening yet")
        return "up"

    assert eventually(flaky, timeout=5, interval=0.001, ignoring=(OSError,)) == "up"


def test_a_check_that_holds_late_still_counts_once_after_the_deadline() -> None:
    until = time.monotonic() + 0.05
    # one try at start, then sleeps of 1 s cut to the deadline, then the last try
    assert eventually(lambda: time.monotonic() >= until, timeout=0.05, interval=1.0)


async def test_the_async_flavour_awaits_coroutines_and_lets_the_loop_run() -> None:
    flag = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, flag.set)
    assert await eventually_async(flag.is_set, timeout=5) is True  # a plain function

    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    assert await eventually_async(value, timeout=1) == 7
    with pytest.raises(AssertionError, match=r"^never not met within 0\.05 s"):
        await eventually_async(lambda: False, timeout=0.05, what="never")
