"""Fast paths through paho's and aiomqtt's internals, each behind a version check.

- properties decoder (:func:`install_fast_paths`, :mod:`._fastprops`; process-wide): paho's
  packet readers decode into a ``Properties`` without per-packet lookup tables (plain path:
  paho's own ``Properties``);
- coalesced writes (:func:`coalesce_writes`): the packets queued in one loop turn leave in one
  ``send()`` (plain path: one send per packet);
- acked publish (:func:`publish_acked`, :func:`publish_qos1`): a QoS 1 publish is a future on
  its PUBACK, without aiomqtt's coroutine, event, ``wait_for`` and two scans of every pending
  call (plain path: ``client.publish``);
- handled at once (:func:`handled_at_once`): each message goes to its handler as paho reads it,
  without a task and an ``asyncio.wait`` each (plain path: ``client.messages``).

Each runs only on a paho/aiomqtt release it was checked against (:mod:`._versions`); on another,
the plain public path runs and one warning says so. Nothing here is applied at import: the API
and the agent call :func:`install_fast_paths` and build their clients with ``fast=True`` /
``on_message`` (:func:`mqtt_adapter.make_client`). ``tests/test_mqtt_adapter_canaries.py``
names, for each, the upstream attribute and behaviour it relies on.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as paho_mqtt
from paho.mqtt.properties import Properties

from ._paho import paho_client
from ._versions import AIOMQTT, PAHO


def install_fast_paths() -> bool:
    """Let paho's packet decoders build :class:`._fastprops.FastProperties` (process-wide,
    idempotent). True when the fast decoder is in place."""
    if not PAHO.ok():
        return False
    from ._fastprops import install_decoder

    return install_decoder()


#: MQTT control packet types (the high nibble of a packet's first byte).
_PUBLISH: Final = 0x30
_PUBACK: Final = 0x40
_DISCONNECT: Final = 0xE0


def coalesce_writes(client: aiomqtt.Client) -> bool:
    """Let a connected-or-not ``aiomqtt.Client`` write all the packets it has queued with one
    ``send()``, not one each. True when applied.

    aiomqtt writes when the socket is writable, once per turn of the event loop, and paho then
    sends every queued packet with its own ``send()``: under load that is one system call (and
    on loopback one trip through the TCP stack and one wake-up of the broker) per PUBACK and per
    PUBLISH. Here the queued packets are joined first. paho acts on the completion of only two
    kinds of packet, a QoS 0 PUBLISH (``on_publish``) and a DISCONNECT; those are sent as paho
    sends them, and only packets between them are joined. A partly sent packet keeps its place:
    its unsent bytes lead the joined buffer, and paho's own bookkeeping (``pos``,
    ``to_process``) carries a joined buffer that the socket takes in parts. MQTT allows several
    packets in one WebSocket frame, so the WebSocket transport may join too.
    """
    if not PAHO.ok():
        return False
    return coalesce_paho_writes(paho_client(client))


def coalesce_paho_writes(paho: paho_mqtt.Client) -> bool:
    """:func:`coalesce_writes` on a paho client."""
    write_one_by_one = getattr(paho, "_packet_write", None)
    if write_one_by_one is None or not hasattr(paho, "_out_packet"):
        return False

    def packet_write() -> Any:
        queued = paho._out_packet
        if len(queued) > 1 and _joinable(queued[0]) and _joinable(queued[1]):
            parts = []
            while queued and _joinable(queued[0]):
                packet = queued.popleft()
                pos = packet["pos"]
                parts.append(packet["packet"][pos:] if pos else packet["packet"])
            joined = b"".join(parts)
            queued.appendleft(
                {
                    "command": _PUBACK,  # any command paho does nothing on completion for
                    "mid": 0,
                    "qos": 0,
                    "pos": 0,
                    "to_process": len(joined),
                    "packet": joined,
                    "info": None,
                }
            )
        return write_one_by_one()

    paho._packet_write = packet_write  # type: ignore[method-assign]
    return True


def _joinable(packet: Mapping[str, Any]) -> bool:
    kind = packet["command"] & 0xF0
    return kind != _DISCONNECT and not (kind == _PUBLISH and packet["qos"] == 0)


def publish_acked(
    client: aiomqtt.Client, topic: str, payload: bytes, properties: Properties | None = None
) -> asyncio.Future[None]:
    """Hand a QoS 1 message to an ``aiomqtt.Client``'s paho client now; the future completes on
    its PUBACK (aiomqtt's own PUBACK callback resolves it).

    Raises ``aiomqtt.MqttCodeError`` when paho refuses the message (no connection). A message
    whose PUBACK never comes leaves its future pending: the caller times out or gives up on it
    with the session. aiomqtt's ``publish`` costs a coroutine, an event, a ``wait_for`` and two
    scans of every pending call per message; a client limiting its concurrent calls
    (``max_concurrent_outgoing_calls``), or an aiomqtt this was not checked against, goes
    through that ``publish`` instead, which holds the limit.
    """
    pending = _pending_publishes(client)  # mid -> what aiomqtt's on_publish .set()s
    if pending is None:
        fallback: asyncio.Future[None] = asyncio.ensure_future(
            client.publish(topic, payload, qos=1, properties=properties)
        )
        return fallback
    info = paho_client(client).publish(topic, payload, 1, False, properties)
    if info.rc != paho_mqtt.MQTT_ERR_SUCCESS:
        raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
    acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    acked.add_done_callback(lambda _: pending.pop(info.mid, None))
    pending[info.mid] = _Acked(acked)
    return acked


def _pending_publishes(client: aiomqtt.Client) -> dict[int, Any] | None:
    """aiomqtt's ``mid -> event`` of publishes awaiting their PUBACK, when the fast path may
    use it: a known aiomqtt, and no limit on concurrent calls (which its publish holds)."""
    if not AIOMQTT.ok():
        return None
    pending: dict[int, Any] | None = getattr(client, "_pending_publishes", None)
    if getattr(client, "_outgoing_calls_sem", True) is not None:
        return None
    return pending


async def publish_qos1(
    client: aiomqtt.Client, topic: str, payload: bytes, properties: Properties | None
) -> None:
    """``await client.publish(topic, payload, qos=1, properties=properties)`` through
    :func:`publish_acked`: the same errors (``MqttCodeError`` when paho refuses the message,
    ``MqttError`` after the client's ``timeout`` without a PUBACK), without aiomqtt's per-call
    overhead."""
    acked = publish_acked(client, topic, payload, properties)
    within = client.timeout  # aiomqtt's: math.inf waits for ever
    timer = None
    if within != math.inf:
        timer = asyncio.get_running_loop().call_later(within, _time_out, acked)
    try:
        await acked
    finally:
        if timer is not None:
            timer.cancel()


class _Acked:
    """What aiomqtt's PUBACK callback sets: resolves the publisher's future."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def set(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


def _time_out(acked: asyncio.Future[None]) -> None:
    if not acked.done():
        acked.set_exception(aiomqtt.MqttError("Operation timed out"))


class _HandledAtOnce(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's incoming queue, replaced by a call: ``handle`` gets each message as paho reads
    it, in order, before paho acknowledges it. ``handle`` must not raise."""

    handle: Callable[[aiomqtt.Message], None]

    def put_nowait(self, item: aiomqtt.Message) -> None:
        self.handle(item)


def handled_at_once(
    handle: Callable[[aiomqtt.Message], None],
) -> type[asyncio.Queue[aiomqtt.Message]] | None:
    """An aiomqtt ``queue_type`` that hands each message to ``handle`` on the spot (aiomqtt's
    message iterator costs a task and an ``asyncio.wait`` per message), or None on an aiomqtt
    this was not checked against: then messages queue, and ``client.messages`` yields them."""
    if not AIOMQTT.ok():
        return None
    return type("HandledAtOnce", (_HandledAtOnce,), {"handle": staticmethod(handle)})
