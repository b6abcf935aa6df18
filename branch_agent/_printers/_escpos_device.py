"""Common ground for backends built on a python-escpos connector (Usb, Serial, File, Win32Raw).

A job opens the device, reads ``DLE EOT`` status (unless disabled or the device cannot answer),
refuses a blocked printer with nothing sent, sends the job, asks ``DLE EOT 1`` once more as
proof of receipt, and closes the device: a printer unplugged and plugged back between jobs just
works. Each subclass names the third-party exceptions its transport raises; they are translated
here, and which code they get depends on the stage:

* before the first job byte: PRINTER_OFFLINE (retryable, nothing printed);
* from the first job byte on: OUTCOME_UNKNOWN (the ticket may be on paper, wholly or in part:
  a person must look before it is printed again).

Status answers wait at most ``status_timeout`` (a printer answers ``DLE EOT`` at once); the
receipt confirmation after the job waits up to ``timeout``, as the printer must read the whole
job before it answers.
"""

from __future__ import annotations

import abc
from typing import Any

from protocol import ErrorCode

from ._base import PrinterError, PrinterReading
from ._escpos_status import StatusFormatError, StatusQuery, StatusReport, read_status, request
from ._serialized import SerializedBackend


class NoStatusChannel(Exception):
    """This device cannot be read (write-only node, no IN endpoint): status stays unknown."""


class EscposDeviceBackend(SerializedBackend):
    def __init__(self, name: str, timeout: float, status_query: bool) -> None:
        super().__init__(name)
        self.timeout = timeout
        self.status_query = status_query
        if timeout > 0:
            self.status_timeout = min(self.status_timeout, timeout)
        #: Seconds the next status answer may take (``_read_byte`` honours it).
        self.read_timeout = self.status_timeout if timeout > 0 else timeout

    # --- what a subclass provides ------------------------------------------------------------

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """The device, for messages (``usb 0416:5011``, ``/dev/ttyUSB0``)."""

    @abc.abstractmethod
    def _open(self) -> Any:
        """Build and open the python-escpos connector (may raise third-party errors)."""

    @abc.abstractmethod
    def _errors(self) -> tuple[type[BaseException], ...]:
        """The third-party exceptions this transport raises (translated to PrinterError)."""

    def _transport_errors(self) -> tuple[type[BaseException], ...]:
        return (OSError, *self._errors())  # TimeoutError is an OSError

    def _can_answer(self, device: Any) -> bool:
        """Whether status requests can be answered at all; if not, none is sent."""
        return True

    def _read_byte(self, device: Any) -> int:
        """One status byte, or TimeoutError; NoStatusChannel when the device cannot answer."""
        raise NoStatusChannel

    def _send(self, device: Any, data: bytes) -> None:
        device._raw(data)

    def _close(self, device: Any) -> None:
        device.close()

    # --- SerializedBackend -------------------------------------------------------------------

    def _status(self) -> PrinterReading:
        try:
            device = self._open_mapped()
        except PrinterError as exc:
            return PrinterReading(online=False, detail=exc.message)
        try:
            report = self._query(device) if self.status_query else None
        except PrinterError as exc:
            return PrinterReading(online=False, detail=exc.message)
        finally:
            self._close_quietly(device)
        if report is None:
            return PrinterReading(online=True, detail="status unknown: device cannot be read")
        return report.reading()

    def _write(self, data: bytes, job_id: str) -> None:
        device = self._open_mapped()
        try:
            report = self._query(device) if self.status_query else None
            if report is not None:
                self._last_reading = report.reading()
                blocking = report.blocking_error()
                if blocking is not None:
                    raise blocking
            self._begin()
            try:
                self._sent(len(data))  # handed over in one piece: some of it may be on paper
                self._send(device, data)
                if report is not None:
                    self.read_timeout = self._step(self.timeout)
                    self._exchange(device, request(StatusQuery.PRINTER))
            except self._transport_errors() as exc:
                raise PrinterError(
                    ErrorCode.OUTCOME_UNKNOWN,
                    f"{self.where}: failed while sending the job ({_describe(exc)}); "
                    "the ticket may be on paper, check the printer before reprinting",
                ) from exc
            finally:
                self.read_timeout = self.status_timeout if self.timeout > 0 else self.timeout
        finally:
            self._close_quietly(device)

    # --- steps -------------------------------------------------------------------------------

    def _open_mapped(self) -> Any:
        try:
            return self._open()
        except PrinterError:
            raise
        except self._transport_errors() as exc:
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE, f"{self.where}: cannot open: {_describe(exc)}"
            ) from exc

    def _exchange(self, device: Any, req: bytes) -> int:
        self._check_preempted()
        self._send(device, req)
        return self._read_byte(device)

    def _query(self, device: Any) -> StatusReport | None:
        """The status report; None when the device has no way to answer."""
        if not self._can_answer(device):
            return None
        try:
            return read_status(lambda req: self._exchange(device, req))
        except NoStatusChannel:
            return None
        except TimeoutError as exc:
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE,
                f"{self.where}: no answer to a status request within {self.read_timeout:.3g}s "
                "(a printer without DLE EOT needs status_query = false)",
            ) from exc
        except StatusFormatError as exc:
            raise PrinterError(ErrorCode.PRINTER_ERROR, f"{self.where}: {exc}") from exc
        except self._transport_errors() as exc:
            raise PrinterError(
                ErrorCode.PRINTER_OFFLINE, f"{self.where}: status request failed: {_describe(exc)}"
            ) from exc

    def _close_quietly(self, device: Any) -> None:
        try:
            self._close(device)
        except self._transport_errors():
            pass  # the job's outcome is already decided; a failing close changes nothing


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
