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
"""

from __future__ import annotations

from typing import Any, Self

import aiomqtt

from protocol import set_tcp_nodelay


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
