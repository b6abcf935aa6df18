"""Serial printers (``/dev/ttyS0``, ``/dev/ttyUSB0``, ``COM3``) through python-escpos ``Serial``.

python-escpos opens the port with a read timeout only; a printer that holds DSR/CTS low (off,
cover open) would block a write forever, so the write timeout is set here too. Status bytes are
read one at a time: ``Serial._read`` asks for 16 and so always waits the full timeout.
"""

from __future__ import annotations

from typing import Any, ClassVar

from protocol import ErrorCode

from ._base import PrinterError
from ._escpos_device import EscposDeviceBackend


def _import_serial() -> Any:
    try:
        import serial
    except ImportError as exc:
        raise PrinterError(
            ErrorCode.PRINTER_ERROR,
            "serial printers need pyserial: pip install pyserial (python-escpos[serial])",
        ) from exc
    return serial


class SerialPrinter(EscposDeviceBackend):
    kind: ClassVar[str] = "serial"

    def __init__(
        self,
        name: str,
        device: str,
        baudrate: int = 9600,
        dsrdtr: bool = True,
        xonxoff: bool = False,
        timeout: float = 5.0,
        status_query: bool = True,
    ) -> None:
        super().__init__(name, timeout, status_query)
        self.device = device
        self.baudrate = baudrate
        self.dsrdtr = dsrdtr
        self.xonxoff = xonxoff
        _import_serial()

    @property
    def where(self) -> str:
        return self.device

    def _errors(self) -> tuple[type[BaseException], ...]:
        from escpos.exceptions import Error as EscposError

        serial = _import_serial()
        return (EscposError, serial.SerialException, ValueError)

    def _open(self) -> Any:
        from escpos.printer import Serial

        printer = Serial(
            devfile=self.device,
            baudrate=self.baudrate,
            timeout=self.timeout,
            dsrdtr=self.dsrdtr,
            xonxoff=self.xonxoff,
        )
        printer.open()
        port = printer.device
        port.write_timeout = self.timeout
        port.reset_input_buffer()  # a late answer from an earlier exchange is not ours
        return printer

    def _send(self, device: Any, data: bytes) -> None:
        serial = _import_serial()
        try:
            device.device.write(data)
            device.device.flush()
        except serial.SerialTimeoutException as exc:
            raise TimeoutError(f"write blocked for {self.timeout}s (flow control)") from exc

    def _read_byte(self, device: Any) -> int:
        device.device.timeout = self.read_timeout
        answer: bytes = device.device.read(1)
        if not answer:
            raise TimeoutError
        return answer[0]
