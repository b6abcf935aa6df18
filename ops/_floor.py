"""The raw floor: what MQTT 5 request/response costs on this broker with this library and no
product code. A requester like the API's (one aiomqtt connection, QoS 1, Response Topic +
Correlation Data + Message Expiry, the same request payload) and bare responders that answer
every request once on its Response Topic with its Correlation Data."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import aiomqtt
import msgspec

from broker import Credentials
from mqtt_adapter import install_fast_paths, make_client, reply_properties, request_properties
from protocol import (
    METHOD_PRINTER_TEST,
    Done,
    PrinterTestParams,
    PrintResult,
    Request,
    encode,
    new_job_id,
    reply_filter,
    reply_topic,
    request_topic,
)

from ._drive import Call

log = logging.getLogger("ops.floor")

#: The requester id of the floor's reply topic (the API uses its instance id).
FLOOR_REQUESTER = "floor"
#: A reply as large as an agent's ``done``.
_REPLY = encode(
    Done(job_id=new_job_id(), at=0.0, result=PrintResult(printer="POS-80C", bytes=1, duration_ms=0))
)


def _client(
    host: str, port: int, creds: Credentials, identifier: str | None = None, **kwargs: Any
) -> aiomqtt.Client:
    install_fast_paths()  # paho decodes as it does in the API and the agents
    return make_client(
        host,
        port,
        client_id=identifier or creds.username,
        username=creds.username,
        password=creds.password,
        **kwargs,
    )


async def run_responder(
    host: str,
    port: int,
    creds: Credentials,
    branch_id: str,
    agent_id: str,
    ready: asyncio.Event,
    count: Callable[[], None],
) -> None:
    """Answer every request on the agent's ``req`` topic until cancelled."""
    sends: set[asyncio.Task[None]] = set()
    async with _client(host, port, creds, clean_start=True) as client:
        await client.subscribe(request_topic(branch_id, agent_id), qos=1)
        ready.set()
        async for message in client.messages:
            props = message.properties
            topic = getattr(props, "ResponseTopic", None)
            if topic is None:
                continue
            # Replies in tasks, as the agent sends them: the next request is read at once.
            task = asyncio.create_task(
                client.publish(
                    topic,
                    _REPLY,
                    qos=1,
                    properties=reply_properties(getattr(props, "CorrelationData", None)),
                )
            )
            sends.add(task)
            task.add_done_callback(sends.discard)
            count()


class FloorRequester:
    """One MQTT connection sending requests to many responders; an async context manager."""

    def __init__(self, host: str, port: int, creds: Credentials) -> None:
        # The cloud's login and its client settings, under a client id of our own.
        self._mqtt = _client(
            host,
            port,
            creds,
            f"{creds.username}-floor-{secrets.token_hex(3)}",
            clean_start=True,
            max_inflight=1000,
            # aiomqtt warns above this many publishes awaiting their PUBACK: that is the load.
            pending_calls_threshold=100_000,
        )
        self._pending: dict[bytes, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._payload = encode(
            Request(
                method=METHOD_PRINTER_TEST,
                params=msgspec.Raw(encode(PrinterTestParams(printer="POS-80C"))),
            )
        )
        self._ids = itertools.count()

    async def __aenter__(self) -> FloorRequester:
        await self._mqtt.__aenter__()
        await self._mqtt.subscribe(reply_filter(FLOOR_REQUESTER), qos=1)
        self._reader = asyncio.create_task(self._read(), name="floor-replies")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._mqtt.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for message in self._mqtt.messages:
            key = getattr(message.properties, "CorrelationData", None)
            future = self._pending.get(key) if key is not None else None
            if future is not None and not future.done():
                future.set_result(None)

    async def call(self, branch_id: str, agent_id: str) -> None:
        job_id = new_job_id()
        key = job_id.encode("ascii")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            props = request_properties(
                response_topic=reply_topic(branch_id, FLOOR_REQUESTER, agent_id),
                correlation_id=job_id,
                expiry_s=33,
            )
            await self._mqtt.publish(
                request_topic(branch_id, agent_id), self._payload, qos=1, properties=props
            )
            await future
        finally:
            del self._pending[key]

    def calls(self, targets: Sequence[tuple[str, str]], concurrency: int) -> list[Call]:
        """``concurrency`` workers' calls, request ``k`` to ``targets[k % len(targets)]``."""

        async def one(k: int) -> str | None:
            branch_id, agent_id = targets[k % len(targets)]
            await self.call(branch_id, agent_id)
            return None

        return [one] * concurrency
