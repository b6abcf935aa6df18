"""USB printers through python-escpos ``Usb`` (pyusb and a libusb backend).

python-escpos' ``Usb`` defaults to no timeout at all (a stuck printer hangs the job forever) and
detaches the kernel driver of interface 0 only; both are set from the config here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from protocol import ErrorCode

from ._base import PrinterError
from ._escpos_device import EscposDeviceBackend


def _import_usb() -> Any:
    try:
        import usb.core
    except ImportError as exc:
        raise PrinterError(
            ErrorCode.PRINTER_ERROR,
            "USB printers need pyusb: pip install pyusb (python-escpos[usb]), and libusb-1.0",
        ) from exc
    return usb


class UsbPrinter(EscposDeviceBackend):
    kind: ClassVar[str] = "usb"

    def __init__(
        self,
        name: str,
        vendor_id: int,
        product_id: int,
        interface: int = 0,
        in_ep: int = 0x82,
        out_ep: int = 0x01,
        timeout: float = 5.0,
        status_query: bool = True,
    ) -> None:
        super().__init__(name, timeout, status_query)
        self.vendor_id = vendor_id
        self.product_id = product_id
        self.interface = interface
        self.in_ep = in_ep
        self.out_ep = out_ep
        _import_usb()

    @property
    def where(self) -> str:
        return f"usb {self.vendor_id:04x}:{self.product_id:04x}"

    @property
    def _timeout_ms(self) -> int:
        return max(1, round(self.timeout * 1000))

    def _errors(self) -> tuple[type[BaseException], ...]:
        from escpos.exceptions import Error as EscposError

        usb = _import_usb()
        # NoBackendError (no libusb) is a ValueError; RuntimeError is python-escpos' own
        # "requires a usb library" guard.
        return (EscposError, usb.core.USBError, ValueError, RuntimeError)

    def _open(self) -> Any:
        from escpos.printer import Usb

        usb = _import_usb()
        printer = Usb(
            self.vendor_id,
            self.product_id,
            timeout=self._timeout_ms,
            in_ep=self.in_ep,
            out_ep=self.out_ep,
        )
        printer.open()
        if self.interface != 0:  # python-escpos only detaches the kernel driver of interface 0
            handle = printer.device
            try:
                if handle.is_kernel_driver_active(self.interface):
                    handle.detach_kernel_driver(self.interface)
            except (NotImplementedError, usb.core.USBError):
                pass  # not libusb1, or no driver bound: nothing to detach
        return printer

    def _read_byte(self, device: Any) -> int:
        usb = _import_usb()
        try:
            answer = device.device.read(self.in_ep, 16, max(1, round(self.read_timeout * 1000)))
        except usb.core.USBTimeoutError as exc:
            raise TimeoutError from exc
        if not answer:
            raise TimeoutError
        return int(answer[-1])
