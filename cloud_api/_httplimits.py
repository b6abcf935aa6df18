"""Limits on the HTTP request head (request line plus headers) before it is read whole.

uvicorn bounds the head only with h11 (``h11_max_incomplete_event_size``); with httptools, the
fast parser the API runs on, nothing does: a 200 MB header was read and held whole, without a
login, and slowed every other request while it arrived. :func:`limited_httptools` counts the
bytes of each head as they arrive and the header lines as they are parsed, and past either limit
answers 431 and closes the connection at once; memory held stays under one head limit plus one
read. h11 (Windows) gets the same byte limit through uvicorn's own option.
"""

from __future__ import annotations

import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("cloud_api.http")


def _refusal(message: str) -> bytes:
    body = json.dumps(
        {
            "error": {
                "code": "INVALID_REQUEST",
                "message": message,
                "retryable": False,
                "job_id": None,
                "field": None,
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _LimitedHttpTools(HttpToolsProtocol):
    max_head_bytes = 32 * 1024
    max_headers = 100

    #: bytes of the current request's head received so far; None once its headers are complete
    _head: int | None = 0
    _count = 0
    _refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._head is None:  # the body: limited by the body size limit, not here
            super().data_received(data)
            return
        room = self.max_head_bytes - self._head
        if len(data) <= room:
            self._head += len(data)
            super().data_received(data)
            return
        # One read may carry the end of the head and the start of the body: the parser gets
        # what the head may still take; if the head ended within it, the rest is body (or the
        # next pipelined request, counted again from its own start).
        self._head += room
        super().data_received(data[:room])
        if self._refused or self.transport.is_closing():
            return
        if self._head is None:
            self.data_received(data[room:])
        else:
            self._refuse(f"request head over {self.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        self._head, self._count = 0, 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count += 1
        if self._count > self.max_headers:
            self._refuse(f"more than {self.max_headers} header lines")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._head = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        super().on_body(body)

    def _refuse(self, why: str) -> None:
        self._refused = True
        log.info("refusing a request from %s: %s", self.client, why)
        if not self.transport.is_closing():
            self.transport.write(_refusal(why))
            self.transport.close()


def limited_httptools(max_head_bytes: int, max_headers: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with these head limits (pass it as ``http=``)."""
    return type(
        "LimitedHttpTools",
        (_LimitedHttpTools,),
        {"max_head_bytes": max_head_bytes, "max_headers": max_headers},
    )
