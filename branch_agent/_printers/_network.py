"""Network printers: raw TCP (port 9100, "JetDirect"), status by ``DLE EOT``.

A job is one connection: ask the four real-time statuses, refuse (sending nothing) when the
printer is out of paper, has its cover open or reports an error, send the job, then ask
``DLE EOT 1`` once more. That last answer is the delivery proof: a printer handles real-time
requests in the order they arrive, so an answer means it read every job byte before it. Without
it, ``sendall`` returning only says the bytes reached our kernel, and a printer that died
mid-job would be reported as printed.

Plain sockets rather than python-escpos ``Network``: its ``_read`` is a single ``recv(16)`` with
the connect timeout (an answer can arrive split or merged), its ``open`` folds "refused",
"timed out" and "no route" into one ``DeviceNotFoundError``, and each instance loads a printer
profile we do not use. Here every step has its own bounded timeout and a typed error.
"""

from __future__ import annotations

import socket
from typing import ClassVar

from protocol import ErrorCode

from ._base import PrinterError, PrinterReading
from ._escpos_status import StatusFormatError, StatusQuery, StatusReport, read_status, request
from ._serialized import SerializedBackend


class _ClosedByPrinter(ConnectionError):
    """The printer closed the connection while we waited for an answer."""


class NetworkPrinter(SerializedBackend):
    kind: ClassVar[str] = "network"

    def __init__(
        self,
        name: str,
        host: str,
        port: int = 9100,
        timeout: float = 10.0,
        status_query: bool = True,
    ) -> None:
        super().__init__(name)
        self.host = host
        self.port = port
        self.timeout = timeout
        self.status_query = status_query

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    # --- SerializedBackend -------------------------------------------------------------------

    def _status(self) -> PrinterReading:
        try:
            with self._connect() as sock:
                if not self.status_query:
                    return PrinterReading(online=True, detail="status queries disabled")
                return self._query(sock).reading()
        except PrinterError as exc:
            return PrinterReading(online=False, detail=exc.message)

    def _write(self, data: bytes, job_id: str) -> None:
        with self._connect() as sock:
            if self.status_query:
                report = self._query(sock)
                self._last_reading = report.reading()
                blocking = report.blocking_error()
                if blocking is not None:
                    raise blocking
            self._send_job(sock, data)

    # --- steps -------------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except TimeoutError as exc:
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE, f"{self._where}: no answer within {self.timeout}s"
            ) from exc
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE, f"{self._where}: cannot connect: {reason}"
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _exchange(self, sock: socket.socket, req: bytes) -> int:
        sock.sendall(req)
        answer = sock.recv(1)
        if not answer:
            raise _ClosedByPrinter("the printer closed the connection")
        return answer[0]

    def _query(self, sock: socket.socket) -> StatusReport:
        try:
            return read_status(lambda req: self._exchange(sock, req))
        except TimeoutError as exc:
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE,
                f"{self._where}: no answer to a status request within {self.timeout}s",
            ) from exc
        except StatusFormatError as exc:
            raise PrinterError(
                ErrorCode.PRINTER_ERROR,
                f"{self._where}: {exc} (a printer without DLE EOT needs status_query = false)",
            ) from exc
        except OSError as exc:
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE, f"{self._where}: connection lost asking status: {exc}"
            ) from exc

    def _send_job(self, sock: socket.socket, data: bytes) -> None:
        # From the first job byte on, a failure may leave a ticket half printed: PRINTER_ERROR,
        # which is not retryable, so nobody prints it twice without a person looking.
        try:
            sock.sendall(data)
            if self.status_query:
                self._exchange(sock, request(StatusQuery.PRINTER))
        except TimeoutError as exc:
            raise PrinterError(
                ErrorCode.PRINTER_ERROR,
                f"{self._where}: printer stopped reading the job for {self.timeout}s; "
                "the ticket may be partly printed",
            ) from exc
        except OSError as exc:
            raise PrinterError(
                ErrorCode.PRINTER_ERROR,
                f"{self._where}: connection lost while sending the job ({exc}); "
                "the ticket may be partly printed",
            ) from exc
