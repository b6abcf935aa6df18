"""The reconnect loop shared by the API and the agent (:class:`mqtt_adapter.SessionLoop`),
driven by stand-in sessions: what it does on a loss, on a stop, and with a broker list."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiomqtt
import pytest

from mqtt_adapter import Backoff, SessionLoop


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


class Script:
    """Stand-in sessions: ``outcomes`` says per connect what happens ("refused", "lost",
    "return", or "hold": serve until cancelled)."""

    def __init__(self, loop: SessionLoop[Endpoint], outcomes: list[str]) -> None:
        self.loop = loop
        self.outcomes = outcomes
        self.connects: list[str] = []
        self.ended = 0
        self.times: list[float] = []

    @contextlib.asynccontextmanager
    async def connect(self, endpoint: Endpoint) -> AsyncIterator[str]:
        self.connects.append(endpoint.host)
        self.times.append(asyncio.get_running_loop().time())
        outcome = self.outcomes.pop(0)
        if outcome == "refused":
            raise aiomqtt.MqttError("refused")
        yield outcome

    async def serve(self, outcome: str, endpoint: Endpoint) -> None:
        self.loop.connected()
        if outcome == "lost":
            raise aiomqtt.MqttError("lost")
        if outcome == "hold":
            await asyncio.Event().wait()

    def end(self) -> None:
        self.ended += 1


def _loop(hosts: list[str], **kwargs: object) -> SessionLoop[Endpoint]:
    return SessionLoop(
        [Endpoint(h, 1) for h in hosts],
        log=logging.getLogger("test"),
        backoff=Backoff(base=0.05, cap=0.2, rng=random.Random(3)),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_one_broker_backs_off_after_each_loss_and_ends_when_serve_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = _loop(["mq"])
    script = Script(loop, ["refused", "refused", "lost", "return"])
    await loop.run(script.connect, script.serve, ended=script.end)
    assert script.connects == ["mq"] * 4 and script.ended == 4
    assert "broker connection lost: mq:1: lost" in caplog.text
    gaps = [b - a for a, b in zip(script.times, script.times[1:], strict=False)]
    assert all(gap <= 0.25 for gap in gaps)  # never beyond the cap (0.2 s)


async def test_a_list_moves_on_at_once_and_waits_only_after_a_round() -> None:
    loop = _loop(["mq1", "mq2"])
    loop.rotation._backoff = Backoff(base=0.3, cap=0.3, rng=random.Random(1))
    script = Script(loop, ["refused", "refused", "return"])
    await loop.run(script.connect, script.serve)
    assert script.connects == ["mq1", "mq2", "mq1"]
    assert script.times[1] - script.times[0] < 0.05  # the next broker at once


async def test_stopping_ends_the_wait_and_the_loop() -> None:
    stopping = asyncio.Event()
    loop = _loop(["mq"], stopping=stopping)
    loop.rotation._backoff = Backoff(base=30, cap=30, rng=random.Random(1))
    script = Script(loop, ["refused", "return"])
    runner = asyncio.create_task(loop.run(script.connect, script.serve))
    await asyncio.sleep(0.1)
    stopping.set()
    async with asyncio.timeout(1):
        await runner
    assert script.connects == ["mq"]


async def test_back_to_the_first_broker_once_it_accepts_connections() -> None:
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    loop = SessionLoop(
        [Endpoint("127.0.0.1", port), Endpoint("mq2", 1)],
        log=logging.getLogger("test"),
        failback_interval=0.05,
    )
    script = Script(loop, ["refused", "hold", "return"])
    runner = asyncio.create_task(loop.run(script.connect, script.serve))
    await asyncio.sleep(0.3)
    assert script.connects == ["127.0.0.1", "mq2"]  # nobody listens on the first yet
    server = await asyncio.start_server(accept, "127.0.0.1", port)
    async with server, asyncio.timeout(3):
        await runner
    assert script.connects == ["127.0.0.1", "mq2", "127.0.0.1"]
