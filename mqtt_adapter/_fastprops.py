"""Fast path: paho's ``Properties``, cheap to build and to decode into.

paho builds three lookup tables in every ``Properties.__init__`` and scans them on every
attribute set, in ``pack()`` and in ``unpack()``: ~50-75 us per message, a visible share of a
request's CPU in the API and in the agent. :class:`FastProperties` keeps the tables as class
attributes (paho only reads them) and precomputes the lookups:

- the builders of :mod:`._properties` store their values and the packed bytes directly (paho
  calls nothing but ``pack()`` on a PUBLISH's properties); setting or deleting any property
  afterwards drops the packed bytes, so ``pack()`` falls back to paho's own packing;
- ``unpack()`` (paho's packet decoders build one for every PUBLISH and PUBACK they read) decodes
  as paho does, with paho's own value readers, checks and error messages; a value paho would
  range-check goes through paho's ``__setattr__``.

:func:`install_decoder` lets paho's packet decoders build ours: a process-wide change, made only
by :func:`mqtt_adapter.install_fast_paths` (never at import). Imported only when the installed
paho is one this was checked against (:mod:`._versions`); what it relies on is listed in
``tests/test_mqtt_adapter_canaries.py``.
"""

from __future__ import annotations

import re
import struct
from typing import Any, Final

from paho.mqtt.exception import MalformedPacket, MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers


class FastProperties(Properties):
    """paho's ``Properties`` with shared tables, prepacked values and a faster ``unpack``."""

    _tables = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    types = _tables.types
    names = _tables.names
    properties = _tables.properties

    def __init__(self, packetType: int = PacketTypes.PUBLISH) -> None:
        self.__dict__["packetType"] = packetType  # the tables are shared: no paho __init__

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__.pop("_packed", None)
        super().__setattr__(name, value)  # type: ignore[no-untyped-call]

    def __delattr__(self, name: str) -> None:
        self.__dict__.pop("_packed", None)
        super().__delattr__(name)

    def pack(self) -> bytes:
        packed: bytes | None = self.__dict__.get("_packed")
        if packed is None:
            packed = bytes(super().pack())  # type: ignore[no-untyped-call]
        return packed

    def clear(self) -> None:
        state = self.__dict__
        state.pop("_packed", None)
        for name in _PROPERTY_NAMES:
            state.pop(name, None)

    def unpack(self, buffer: bytes | bytearray) -> tuple[Properties, int]:
        self.clear()
        state = self.__dict__
        packet_type = state["packetType"]
        propslen, vbi_len = VariableByteIntegers.decode(buffer)  # type: ignore[no-untyped-call]
        buffer = buffer[vbi_len:]
        left = propslen
        while left > 0:
            identifier, id_len = VariableByteIntegers.decode(buffer)  # type: ignore[no-untyped-call]
            buffer = buffer[id_len:]
            left -= id_len
            name, value_type, packet_types, multiple, checked = _BY_IDENTIFIER[identifier]
            value: Any
            if value_type == _UTF8_PAIR:
                key, key_len = read_utf(buffer, left)
                text, text_len = read_utf(buffer[key_len:], left - key_len)
                value, value_len = (key, text), key_len + text_len
            elif value_type == _UTF8:
                value, value_len = read_utf(buffer, left)
            else:
                value, value_len = self.readProperty(buffer, value_type, left)  # type: ignore[no-untyped-call]
            buffer = buffer[value_len:]
            left -= value_len
            if not multiple and name in state:
                # paho's message, as paho words it
                raise MQTTException(f"Property '{property}' must not exist more than once")
            if checked or packet_type not in packet_types:
                setattr(self, name, value)  # paho's checks and messages
            elif multiple:
                state[name] = [*state.get(name, ()), value]
            else:
                state[name] = value
        return self, propslen + vbi_len

    @classmethod
    def prepacked(cls, values: dict[str, Any], body: bytes) -> FastProperties:
        """Properties holding ``values`` whose packed form is ``body`` (without its length):
        the caller packed them exactly as paho would."""
        props = cls()
        state = props.__dict__
        state.update(values)
        state["_packed"] = vbi(len(body)) + body
        return props


def _identifiers() -> dict[int, tuple[str, int, list[int], bool, bool]]:
    """Property identifier -> (attribute name, value type, packet types, repeatable, range
    checked), from paho's own tables."""
    tables = FastProperties._tables
    checked = {
        "ReceiveMaximum",
        "TopicAlias",
        "TopicAliasMaximum",
        "MaximumPacketSize",
        "SubscriptionIdentifier",
        "RequestResponseInformation",
        "RequestProblemInformation",
        "PayloadFormatIndicator",
    }
    by_identifier = {}
    for spaced, identifier in tables.names.items():
        name = spaced.replace(" ", "")
        value_type, packet_types = tables.properties[identifier]
        repeatable = bool(tables.allowsMultiple(name))  # type: ignore[no-untyped-call]
        by_identifier[identifier] = (name, value_type, packet_types, repeatable, name in checked)
    return by_identifier


_BY_IDENTIFIER: Final = _identifiers()
_UTF8: Final = FastProperties._tables.types.index("UTF-8 Encoded String")
_UTF8_PAIR: Final = FastProperties._tables.types.index("UTF-8 String Pair")
_PROPERTY_NAMES: Final = tuple(entry[0] for entry in _BY_IDENTIFIER.values())
#: What MQTT 5 forbids in a UTF-8 string (section 1.5.4): surrogates, U+0000, U+FEFF.
_FORBIDDEN: Final = re.compile("[\ud800-\udfff\x00\ufeff]")


def read_utf(buffer: bytes | bytearray, maxlen: int) -> tuple[str, int]:
    """paho's ``readUTF`` (same checks, same errors), with the character check as one regular
    expression search instead of a Python loop over the characters (~15 us for a
    ``traceparent`` user property)."""
    if maxlen < 2:
        raise MalformedPacket("Not enough data to read string length")
    length: int = struct.unpack("!H", buffer[:2])[0]
    if length > maxlen - 2:
        raise MalformedPacket("Length delimited string too long")
    text = bytes(buffer[2 : 2 + length]).decode("utf-8")
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        char = bad.group()
        if char == "\x00":
            raise MalformedPacket("[MQTT-1.5.4-2] Null found in UTF-8 data")
        if char == "\ufeff":
            raise MalformedPacket("[MQTT-1.5.4-3] U+FEFF in UTF-8 data")
        raise MalformedPacket("[MQTT-1.5.4-1] D800-DFFF found in UTF-8 data")
    return text, length + 2


def vbi(value: int) -> bytes:
    """An MQTT Variable Byte Integer (paho's ``VariableByteIntegers.encode``)."""
    if not 0 <= value <= 268_435_455:
        raise ValueError(f"Value {value!r} must be in range 0-268435455")
    out = bytearray()
    while True:
        digit, value = value & 0x7F, value >> 7
        out.append(digit | 0x80 if value else digit)
        if not value:
            return bytes(out)


def install_decoder() -> bool:
    """paho's packet decoders build a ``Properties`` for every PUBLISH and PUBACK they read (an
    API instance reads four per test print, an agent three per job): let them build ours.
    True when installed (or already), False when paho's decoders are not where expected."""
    try:
        from paho.mqtt import _packet
    except ImportError:  # pragma: no cover - guarded by the version check
        return False
    current = getattr(_packet, "Properties", None)
    if current is Properties:
        setattr(_packet, "Properties", FastProperties)  # noqa: B010 (not re-exported by paho)
        return True
    return current is FastProperties


def uninstall_decoder() -> None:
    """Give paho's packet decoders their own ``Properties`` back (tests compare the two)."""
    from paho.mqtt import _packet

    if getattr(_packet, "Properties", None) is FastProperties:
        setattr(_packet, "Properties", Properties)  # noqa: B010
