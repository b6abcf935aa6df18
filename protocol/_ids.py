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


def new_job_id() -> str:
    """A time-ordered unique job id (UUIDv7 layout, 32 hex digits).

    Ordered ids keep job listings and store indexes in creation order without a second column;
    ids made in the same millisecond by one process still increase (RFC 9562, method 3).
    """
    global _last_id
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | (rand & ((1 << 76) - 1))
    # Set the RFC 9562 variant bits (10xx) in the 65th and 66th bits.
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    with _id_lock:
        if value <= _last_id:
            value = _last_id + 1
        _last_id = value
    return f"{value:032x}"
