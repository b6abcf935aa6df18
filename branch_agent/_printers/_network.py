"""Network printers: raw TCP (port 9100, "JetDirect"), status by ``DLE EOT``.

One kept-alive connection per printer carries both the status polls and the jobs, and is closed
after ``idle_close`` seconds without use (or at the first sign of trouble: a timeout, a reset, a
stray byte). A connection per poll would leave a TIME-WAIT socket behind every half second and
compete with the restaurant's own POS software on printers that take one connection at a time.

A job: ask the four real-time statuses, refuse (sending nothing) when the printer is out of
paper, has its cover open or reports an error, pass the point of no return
(:meth:`WriteTicket.start`), send the job, then ask ``DLE EOT 1`` once more. That last answer is
the delivery proof: a printer handles real-time requests in the order they arrive, so an answer
means it read every job byte before it. What is reported when something breaks:

* before the first job byte: the printer's condition (PRINTER_OFFLINE, PAPER_OUT, ...), nothing
  printed; past the job's deadline: EXPIRED, nothing printed;
* after the first job byte (a printer that vanishes mid-job, or jams after reading every byte
  and never confirms): OUTCOME_UNKNOWN — the ticket may be on paper, a person must look.

Every step is bounded: status answers by ``status_timeout`` (1 s), connecting and each chunk of
job data by ``timeout``; everything up to the point of no return by the job's deadline (the
latest start), the job data and its receipt by ``write_until`` (the deadline plus the write
allowance, :class:`WriteTicket`).

Plain sockets rather than python-escpos ``Network``: its ``_read`` is a single ``recv(16)`` with
the connect timeout (an answer can arrive split or merged), its ``open`` folds "refused",
"timed out" and "no route" into one ``DeviceNotFoundError``, and each instance loads a printer
profile we do not use. Here every step has its own bounded timeout and a typed error.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import ClassVar

from protocol import ErrorCode

from ._base import DeadlinePassed, PrinterError, PrinterReading
from ._escpos_status import StatusFormatError, StatusQuery, StatusReport, read_status, request
from ._serialized import STATUS_TIMEOUT, SerializedBackend

#: Bytes handed to the socket per send (and counted as sent).
_CHUNK = 64 * 1024
#: Why a started job was cut off for lack of time (:attr:`WriteTicket.write_until`).
_OUT_OF_TIME = "the job's time to print (its deadline plus the write allowance) ran out"


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
        status_timeout: float = STATUS_TIMEOUT,
        idle_close: float = 15.0,
    ) -> None:
        super().__init__(name, status_timeout=min(status_timeout, timeout))
        self.host = host
        self.port = port
        self.timeout = timeout
        self.status_query = status_query
        self.idle_close = idle_close
        self._sock: socket.socket | None = None
        self._last_used = 0.0
        self._idle_timer: threading.Timer | None = None
        #: Connections opened so far (for tests and the doctor).
        self.connects = 0

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    # --- SerializedBackend -------------------------------------------------------------------

    def _status(self) -> PrinterReading:
        try:
            if not self.status_query:
                self._connection(self.status_timeout)
                return PrinterReading(online=True, detail="status queries disabled")
            return self._checked(self.status_timeout).reading()
        except PrinterError as exc:
            return PrinterReading(online=False, detail=exc.message)
        finally:
            self._used()

    def _write(self, data: bytes, job_id: str) -> None:
        try:
            if self.status_query:
                report = self._checked(self._step(self.status_timeout))
                self._last_reading = report.reading()
                blocking = report.blocking_error()
                if blocking is not None:
                    raise blocking
                sock = self._connection(self._step(self.timeout))
            else:
                sock = self._connection(self._step(self.timeout))
            self._begin()
            self._send_job(sock, data)
            if not self.status_query:
                self._drop()  # no receipt to ask for: the close is the end of the job
        except BaseException:
            self._drop()
            raise
        finally:
            self._used()

    def _interrupt(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def abort(self) -> None:
        """Stop the job being written (its deadline came): the connection is cut."""
        self._interrupt()

    def close(self) -> None:
        with self._lock:
            self._drop()
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None

    # --- the connection ----------------------------------------------------------------------

    def _connection(self, timeout: float) -> socket.socket:
        """The kept-alive connection, checked, or a new one."""
        if self._sock is not None and self._usable(self._sock):
            return self._sock
        self._drop()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except TimeoutError as exc:
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE, f"{self._where}: no answer within {timeout:.3g}s"
            ) from exc
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE, f"{self._where}: cannot connect: {reason}"
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connects += 1
        self._sock = sock
        return sock

    @staticmethod
    def _usable(sock: socket.socket) -> bool:
        """Whether a kept connection is still open and clean: nothing unread (a late answer to
        a request that timed out would be taken for the next answer)."""
        try:
            sock.setblocking(False)
            sock.recv(1, socket.MSG_PEEK)  # a stray byte, or b"": the printer closed it
        except BlockingIOError:
            return True  # open, nothing waiting: clean
        except OSError:
            pass
        return False

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _used(self) -> None:
        self._last_used = time.monotonic()
        if self._sock is not None and self._idle_timer is None and self.idle_close > 0:
            self._arm_idle_timer(self.idle_close)

    def _arm_idle_timer(self, delay: float) -> None:
        timer = threading.Timer(delay, self._close_if_idle)
        timer.daemon = True
        self._idle_timer = timer
        timer.start()

    def _close_if_idle(self) -> None:
        if not self._lock.acquire(blocking=False):
            self._arm_idle_timer(self.idle_close)  # in use right now: look again later
            return
        try:
            idle = time.monotonic() - self._last_used
            if idle >= self.idle_close:
                self._drop()
                self._idle_timer = None
            elif self._sock is not None:
                self._arm_idle_timer(self.idle_close - idle)
            else:
                self._idle_timer = None
        finally:
            self._lock.release()

    # --- steps -------------------------------------------------------------------------------

    def _checked(self, timeout: float) -> StatusReport:
        """The printer's status over the kept connection; a kept connection the printer closed
        meanwhile (many close idle ones) is replaced once."""
        reused = self._sock is not None
        sock = self._connection(timeout)
        try:
            return self._query(sock, timeout)
        except PrinterError as exc:
            self._drop()
            silent = isinstance(exc.__cause__, TimeoutError)  # a hung printer: no second try
            if not reused or silent or (self._polling and self._preempted):
                raise
        return self._query(self._connection(timeout), timeout)

    def _exchange(self, sock: socket.socket, req: bytes, timeout: float) -> int:
        self._check_preempted()
        sock.settimeout(timeout)
        sock.sendall(req)
        answer = sock.recv(1)
        if not answer:
            raise _ClosedByPrinter("the printer closed the connection")
        return answer[0]

    def _query(self, sock: socket.socket, timeout: float) -> StatusReport:
        try:
            return read_status(lambda req: self._exchange(sock, req, timeout))
        except TimeoutError as exc:
            self._drop()
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE,
                f"{self._where}: no answer to a status request within {timeout:.3g}s",
            ) from exc
        except StatusFormatError as exc:
            self._drop()
            raise PrinterError(
                ErrorCode.PRINTER_ERROR,
                f"{self._where}: {exc} (a printer without DLE EOT needs status_query = false)",
            ) from exc
        except OSError as exc:
            self._drop()
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE, f"{self._where}: connection lost asking status: {exc}"
            ) from exc

    def _send_job(self, sock: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        try:
            while self._bytes_sent < len(data):
                sock.settimeout(self._step(self.timeout))
                self._sent(sock.send(view[self._bytes_sent : self._bytes_sent + _CHUNK]))
            if self.status_query:
                self._exchange(sock, request(StatusQuery.PRINTER), self._step(self.timeout))
        except DeadlinePassed as exc:
            raise self._cut_short(data, _OUT_OF_TIME) from exc
        except TimeoutError as exc:
            ticket = self._ticket
            bound = ticket.bound if ticket is not None else None
            if bound is not None and time.time() >= bound - 0.01:
                reason = _OUT_OF_TIME
            else:
                reason = f"the printer stopped reading for {self.timeout:.3g}s"
            raise self._cut_short(data, reason) from exc
        except OSError as exc:
            stopped = self._ticket is not None and self._ticket.stopped.is_set()
            reason = _OUT_OF_TIME if stopped else f"connection lost ({exc})"
            raise self._cut_short(data, reason) from exc

    def _cut_short(self, data: bytes, reason: str) -> PrinterError:
        """The error for a job that broke off after the point of no return."""
        sent = self._bytes_sent
        if sent == 0:
            if reason == _OUT_OF_TIME:
                return DeadlinePassed(f"{self._where}: {reason} before any byte was sent")
            return PrinterError(
                ErrorCode.PRINTER_OFFLINE, f"{self._where}: {reason}; nothing was sent"
            )
        if sent < len(data):
            what = f"after {sent} of {len(data)} bytes"
        else:
            what = f"after all {len(data)} bytes, before the printer confirmed them"
        return PrinterError(
            ErrorCode.OUTCOME_UNKNOWN,
            f"{self._where}: {reason} {what}; the ticket may be on paper, "
            "check the printer before reprinting",
        )
