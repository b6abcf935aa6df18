"""What the fake ESC/POS printer (:mod:`ops.fake_printer`) says and keeps: its behaviours, its
``DLE EOT`` answers, and the bytes each connection sent, job by job, with when each job began
to arrive."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = ["BEHAVIOURS", "DLE_EOT", "Behaviour", "Connection", "Paper", "PrinterState", "reset"]

DLE_EOT = b"\x10\x04"
Behaviour = Literal[
    "normal",
    "stall",
    "stall_on_data",
    "drop",
    "drop_on_data",
    "jam_after_data",
    "vanish_mid_job",
    "pause",
]
BEHAVIOURS: tuple[Behaviour, ...] = get_args(Behaviour)
Paper = Literal["ok", "near_end", "out"]


@dataclass
class PrinterState:
    """What the fake printer says about itself when asked with ``DLE EOT n``."""

    online: bool = True
    paper: Paper = "ok"
    cover_open: bool = False
    #: Bits of ``DLE EOT 3`` (0x08 autocutter, 0x20 unrecoverable, 0x40 auto-recoverable).
    error_bits: int = 0

    def answer(self, n: int) -> bytes:
        """The one-byte answer to ``DLE EOT n`` (None-like empty bytes for an unknown ``n``)."""
        base = 0x12
        paper_out = self.paper == "out"
        if n == 1:
            offline = not self.online or self.cover_open or paper_out or bool(self.error_bits)
            return bytes([base | (0x08 if offline else 0)])
        if n == 2:
            value = base
            value |= 0x04 if self.cover_open else 0
            value |= 0x20 if paper_out else 0
            value |= 0x40 if self.error_bits else 0
            return bytes([value])
        if n == 3:
            return bytes([base | (self.error_bits & 0x6C)])
        if n == 4:
            value = base
            value |= 0x0C if self.paper in ("near_end", "out") else 0
            value |= 0x60 if paper_out else 0
            return bytes([value])
        return b""


@dataclass
class Connection:
    """What one client connection sent.

    A connection may carry several jobs (a client that keeps it alive): job data that follows a
    status request starts a new job, and a job ends at the next status request or when the
    connection closes.
    """

    peer: tuple[str, int]
    raw: bytearray = field(default_factory=bytearray)
    data: bytearray = field(default_factory=bytearray)
    queries: list[int] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    #: ``jam_after_data``: the job arrived and the printer jammed; no answer any more.
    jammed: bool = False
    #: Jobs that ended (followed by a status request or the close), and the one arriving.
    finished: list[bytes] = field(default_factory=list)
    current: bytearray = field(default_factory=bytearray)
    #: wall-clock time the first byte of job data arrived (when paper started), if any
    data_at: float | None = None
    #: (offset in ``data``, wall-clock time) where each job began to arrive: on a kept-alive
    #: connection that carries many jobs, when each of them reached the paper
    arrivals: list[tuple[int, float]] = field(default_factory=list)

    def add_data(self, chunk: bytes) -> None:
        now = time.time()
        if self.data_at is None:
            self.data_at = now
        if not self.current:  # the first bytes of a job
            self.arrivals.append((len(self.data), now))
        self.data += chunk
        self.current += chunk

    def arrived_at(self, offset: int) -> float | None:
        """When the job that holds the byte at ``offset`` of ``data`` began to arrive (a job
        that stalls mid-way started on paper at its first byte, not when the rest came)."""
        at = None
        for start, when in self.arrivals:
            if start > offset:
                break
            at = when
        return at

    def end_job(self) -> None:
        if self.current:
            self.finished.append(bytes(self.current))
            self.current = bytearray()


def reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the client sees 'connection reset', as when a printer dies."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
