"""Ids: the safe character set for names that become topic levels, and job ids."""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Final

from ._errors import InvalidId

#: Branch, agent, printer and requester ids: they become MQTT topic levels and file names, so
#: they may never hold ``/``, ``+``, ``#``, whitespace, ``..`` tricks or control characters.
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def is_valid_id(value: str) -> bool:
    """True when ``value`` may be used as a branch, agent, printer or requester id."""
    return ID_PATTERN.fullmatch(value) is not None and ".." not in value


def validate_id(value: str, what: str = "id") -> str:
    """Return ``value`` unchanged, or raise :class:`InvalidId` naming ``what``."""
    if not is_valid_id(value):
        raise InvalidId(
            f"invalid {what} {value[:80]!r}: use 1-64 characters from A-Z a-z 0-9 _ . - "
            "starting with a letter or digit"
        )
    return value


_last_id = 0
_id_lock = threading.Lock()

#: Random bytes are drawn ahead, for 256 ids at a time: ``os.urandom`` releases the GIL, and on
#: a busy event loop with another thread running every release costs a GIL hand-over.
_RANDOM_CHUNK: Final = 10 * 256
_random = b""
_random_at = 0
_RAND_BITS: Final = (1 << 76) - 1
_VERSION_7: Final = 0x7 << 76
_VARIANT_MASK: Final = ~(0x3 << 62)
_VARIANT_10: Final = 0x2 << 62


def _forget_random() -> None:
    """In a forked child: the parent's bytes drawn ahead must not make its ids too."""
    global _random, _random_at
    _random, _random_at = b"", 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_random)


def new_job_id() -> str:
    """A time-ordered unique job id (UUIDv7 layout, 32 hex digits).

    Ordered ids keep job listings and store indexes in creation order without a second column;
    ids made in the same millisecond by one process still increase (RFC 9562, method 3).
    """
    global _last_id, _random, _random_at
    ms = time.time_ns() // 1_000_000
    with _id_lock:
        at = _random_at
        if at >= len(_random):
            _random, at = os.urandom(_RANDOM_CHUNK), 0
        _random_at = at + 10
        rand = int.from_bytes(_random[at : at + 10], "big")
        # 48 bits of milliseconds, version 7, then the RFC 9562 variant bits (10) at bit 62
        value = ((ms & 0xFFFFFFFFFFFF) << 80 | _VERSION_7 | rand & _RAND_BITS) & _VARIANT_MASK
        value |= _VARIANT_10
        if value <= _last_id:
            value = _last_id + 1
        _last_id = value
    return f"{value:032x}"
