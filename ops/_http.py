"""A minimal HTTP/1.1 keep-alive client on ``asyncio.Protocol`` for load generation.

At a thousand requests per second the client must cost far less than the server it measures:
httpx spends hundreds of microseconds per request in its own layers, and aiohttp would be a new
dependency. One request in flight per connection, ``Content-Length`` framed responses only
(what uvicorn sends for JSON bodies); anything else is an error, not a silent misread.
"""

from __future__ import annotations

import asyncio
import socket


class HttpError(Exception):
    """The connection broke or the server answered something this client does not parse."""


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; ``await conn.request(raw)`` returns ``(status, body)``."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, host, port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buf += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            waiter.set_exception(HttpError(f"bad status line {head[0][:80]!r}"))
            return
        length = None
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            waiter.set_exception(HttpError("response without Content-Length"))
            return
        total = end + 4 + length
        if len(self._buf) < total:
            return
        body = bytes(self._buf[end + 4 : total])
        del self._buf[:total]
        waiter.set_result((status, body))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self._closed or self._transport is None:
            raise HttpError("connection closed")
        if self._waiter is not None and not self._waiter.done():
            raise HttpError("one request at a time per connection")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        try:
            return await self._waiter
        except BaseException:
            # Cancelled or broken mid-request: a late response would answer the next request.
            self.close()
            raise
        finally:
            self._waiter = None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()


def post_request(host: str, port: int, path: str, token: str) -> bytes:
    """The bytes of a bodiless ``POST`` with a bearer token."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
