"""The agent's MQTT client: aiomqtt with the PUBACK of incoming messages under our control.

paho (and so aiomqtt) acknowledges a QoS 1 PUBLISH as soon as its ``on_message`` callback returns,
i.e. when aiomqtt has put the message in its queue, before the agent has looked at it. A job
acknowledged that way and lost in a crash is gone: the broker considers it delivered. aiomqtt 2.x
has no option for manual acknowledgement, but it builds its paho client in ``__init__`` and keeps
it as ``_client``; paho's ``manual_ack_set(True)`` then withholds the PUBACK until ``ack(mid,
qos)``. aiomqtt drives paho from the event loop thread (socket readers), so calling ``ack`` from a
coroutine or callback on that loop is safe. The private attribute is touched here and nowhere else.

The agent publishes its replies (three per job) through :func:`protocol.publish_acked`: the
message goes to paho at once and a plain future completes on its PUBACK.

:class:`BrokerRotation` picks the broker of the agent's ordered list to connect to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import aiomqtt

from protocol import Backoff, set_tcp_nodelay

if TYPE_CHECKING:
    from ._config import MqttSettings


class ManualAckClient(aiomqtt.Client):
    """An :class:`aiomqtt.Client` that sends a message's PUBACK only when told to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client.manual_ack_set(True)

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        # socket_options miss paho's WebSocket wrapper: Nagle off on every transport.
        set_tcp_nodelay(self)
        return self

    def ack(self, message: aiomqtt.Message) -> None:
        """Acknowledge ``message`` (QoS 1: PUBACK); a QoS 0 message needs nothing."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)


class BrokerRotation:
    """Which broker of the agent's ordered list to connect to next.

    The first broker is preferred. A lost or refused connection moves to the next broker at
    once; only after every broker failed in a row does the agent wait (``backoff``) before the
    next round. While on another broker, :func:`reachable` tells when the first answers again.
    """

    def __init__(self, endpoints: Sequence[MqttSettings], backoff: Backoff) -> None:
        if not endpoints:
            raise ValueError("no broker to connect to")
        self.endpoints = list(endpoints)
        self.index = 0
        self._backoff = backoff
        self._failed_in_row = 0

    @property
    def current(self) -> MqttSettings:
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


async def reachable(endpoint: MqttSettings, within: float = 2.0) -> bool:
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
