"""One broker session after another: the reconnect loop of the API and of the agent.

:class:`SessionLoop` connects to a broker of an ordered list, runs the caller's ``serve`` on the
connected client, and on a lost or refused connection moves on. With one broker (each of the
API's links) that is: back off, then connect again. With several (an agent's list), a failure
moves to the next broker at once; only after every broker failed in a row does it back off
(capped exponential, full jitter: :class:`Backoff`) before the next round. While on another
broker than the first, a TCP probe of the first every ``failback_interval`` seconds ends the
session as soon as the first accepts connections again, and the loop returns to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Generic, Protocol, TypeVar

import aiomqtt

from ._backoff import Backoff


class Endpoint(Protocol):
    """A broker address (both sides' MQTT settings have these)."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


E = TypeVar("E", bound=Endpoint)
C = TypeVar("C")


class BrokerRotation(Generic[E]):
    """Which broker of an ordered list to connect to next.

    The first broker is preferred. A lost or refused connection moves to the next broker at
    once; only after every broker failed in a row is there a wait (``backoff``) before the next
    round. While on another broker, :func:`reachable` tells when the first answers again.
    """

    def __init__(self, endpoints: Sequence[E], backoff: Backoff) -> None:
        if not endpoints:
            raise ValueError("no broker to connect to")
        self.endpoints = list(endpoints)
        self.index = 0
        self._backoff = backoff
        self._failed_in_row = 0

    @property
    def current(self) -> E:
        return self.endpoints[self.index]

    @property
    def preferred(self) -> bool:
        return self.index == 0

    def connected(self) -> None:
        self._failed_in_row = 0
        self._backoff.reset()

    def failed(self) -> float:
        """The current broker failed: move to the next; returns seconds to wait first."""
        self._failed_in_row += 1
        self.index = (self.index + 1) % len(self.endpoints)
        if self._failed_in_row < len(self.endpoints):
            return 0.0
        self._failed_in_row = 0
        return self._backoff.next()

    def back_to_preferred(self) -> None:
        self.index = 0
        self._failed_in_row = 0


async def reachable(endpoint: Endpoint, within: float = 2.0) -> bool:
    """Does ``endpoint`` accept a TCP connection (a cheap sign the broker is back)?"""
    try:
        async with asyncio.timeout(within):
            _, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class _PreferredBrokerBack(Exception):
    """The first broker answers again while the session is on another one."""


class SessionLoop(Generic[E]):
    """Reconnect loop over ``endpoints`` (see the module docstring).

    ``run(connect, serve)``: ``connect(endpoint)`` builds an unconnected client (an async
    context manager that connects), ``serve(client, endpoint)`` uses it until the session ends;
    ``serve`` calls :meth:`connected` once the session is established (the backoff starts over).
    ``serve`` returning ends the loop; ``aiomqtt.MqttError`` means "lost": log, move on.
    ``stopping``, once set, ends the loop instead of reconnecting and cuts a wait short.
    """

    def __init__(
        self,
        endpoints: Sequence[E],
        *,
        log: logging.Logger,
        backoff: Backoff | None = None,
        failback_interval: float | None = None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.rotation: BrokerRotation[E] = BrokerRotation(endpoints, backoff or Backoff())
        self.failback_interval = failback_interval
        self.stopping = stopping or asyncio.Event()
        self._log = log

    @property
    def endpoints(self) -> list[E]:
        return self.rotation.endpoints

    def connected(self) -> None:
        """The session is established: the next loss starts the backoff over."""
        self.rotation.connected()

    async def run(
        self,
        connect: Callable[[E], AbstractAsyncContextManager[C]],
        serve: Callable[[C, E], Awaitable[None]],
        *,
        ended: Callable[[], None] | None = None,
    ) -> None:
        """Until ``serve`` returns or ``stopping`` is set; ``ended()`` after every session
        (connected or not), once its client is closed."""
        rotation = self.rotation
        while not self.stopping.is_set():
            endpoint = rotation.current
            try:
                async with connect(endpoint) as client:
                    await self._serve(serve(client, endpoint))
                    return
            except _PreferredBrokerBack:
                self._log.info("the preferred broker answers again: moving back to it")
                rotation.back_to_preferred()
                continue
            except aiomqtt.MqttError as exc:
                self._log.warning(
                    "broker connection lost: %s:%s: %s", endpoint.host, endpoint.port, exc
                )
            finally:
                if ended is not None:
                    ended()
            delay = rotation.failed()  # the next broker at once; a pause after a whole round
            if delay:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stopping.wait()

    async def _serve(self, serving: Awaitable[None]) -> None:
        if self.failback_interval is None or self.rotation.preferred:
            await serving
            return
        session = asyncio.ensure_future(serving)
        failback = asyncio.create_task(self._preferred_back(), name="failback")
        tasks = (session, failback)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if not session.done() and self.stopping.is_set():
                await session  # a graceful stop under way: let it finish here
            if session.done():
                return session.result()  # re-raise a broken connection
            # leave this session as if the connection broke
            raise _PreferredBrokerBack
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _preferred_back(self) -> None:
        """Return once the first broker accepts connections."""
        assert self.failback_interval is not None
        while True:
            await asyncio.sleep(self.failback_interval)
            if await reachable(self.rotation.endpoints[0]):
                return
