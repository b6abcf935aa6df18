"""The agent's MQTT client: aiomqtt with the PUBACK of incoming messages under our control.

paho (and so aiomqtt) acknowledges a QoS 1 PUBLISH as soon as its ``on_message`` callback returns,
i.e. when aiomqtt has put the message in its queue, before the agent has looked at it. A job
acknowledged that way and lost in a crash is gone: the broker considers it delivered. aiomqtt 2.x
has no option for manual acknowledgement, but it builds its paho client in ``__init__`` and keeps
it as ``_client``; paho's ``manual_ack_set(True)`` then withholds the PUBACK until ``ack(mid,
qos)``. aiomqtt drives paho from the event loop thread (socket readers), so calling ``ack`` from a
coroutine or callback on that loop is safe. The private attribute is touched here and nowhere else.

The agent publishes its replies (three per job) through :meth:`ManualAckClient.publish_acked`:
the message goes to paho at once and a plain future completes on its PUBACK, where aiomqtt's
``publish`` costs a coroutine, an event and a ``wait_for`` task per message.
"""

from __future__ import annotations

import asyncio
from typing import Any, Self

import aiomqtt
from paho.mqtt.client import MQTT_ERR_SUCCESS
from paho.mqtt.properties import Properties

from protocol import set_tcp_nodelay


class ManualAckClient(aiomqtt.Client):
    """An :class:`aiomqtt.Client` that sends a message's PUBACK only when told to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client.manual_ack_set(True)
        #: QoS 1 messages of :meth:`publish_acked` waiting for their PUBACK, by message id.
        self._acks: dict[int, asyncio.Future[None]] = {}

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        # socket_options miss paho's WebSocket wrapper: Nagle off on every transport.
        set_tcp_nodelay(self)
        return self

    def ack(self, message: aiomqtt.Message) -> None:
        """Acknowledge ``message`` (QoS 1: PUBACK); a QoS 0 message needs nothing."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    def publish_acked(
        self, topic: str, payload: bytes, properties: Properties | None = None
    ) -> asyncio.Future[None]:
        """Hand a QoS 1 message to paho now; the future completes on its PUBACK.

        Raises :class:`aiomqtt.MqttCodeError` when paho refuses the message (no connection).
        Messages still waiting when the session ends are never acknowledged: their futures stay
        pending, so the caller gives up on them with the session.
        """
        info = self._client.publish(topic, payload, 1, False, properties)
        if info.rc != MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[info.mid] = future
        return future

    def _on_publish(self, client: Any, userdata: Any, mid: int, *args: Any) -> None:
        future = self._acks.pop(mid, None)
        if future is None:
            super()._on_publish(client, userdata, mid, *args)  # aiomqtt's own publish()
        elif not future.done():
            future.set_result(None)
