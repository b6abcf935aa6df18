"""Printer configuration: a tagged union on ``kind``, and the backend factory."""

from __future__ import annotations

from pathlib import Path

import msgspec

from ._base import PrinterBackend


class _PrinterConfigBase(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, tag_field="kind"
):
    #: Printer id as the cloud addresses it (``POS-80C``).
    name: str


class VirtualPrinterConfig(_PrinterConfigBase, kw_only=True, frozen=True, tag="virtual"):
    """Stores each job's bytes in ``directory`` (default: ``{data_dir}/virtual/{name}``)."""

    directory: str | None = None


class NetworkPrinterConfig(_PrinterConfigBase, kw_only=True, frozen=True, tag="network"):
    """Raw TCP (port 9100); status by ``DLE EOT`` unless ``status_query`` is false."""

    host: str
    port: int = 9100
    #: Seconds for each step of a job: connecting, each chunk of job data, the receipt.
    timeout: float = 10.0
    #: Seconds a status answer may take (a printer answers ``DLE EOT`` at once).
    status_timeout: float = 1.0
    #: Seconds without use after which the kept-alive connection is closed.
    idle_close: float = 15.0
    status_query: bool = True


class UsbPrinterConfig(_PrinterConfigBase, kw_only=True, frozen=True, tag="usb"):
    """A USB printer found by vendor and product id (needs pyusb and libusb)."""

    vendor_id: int
    product_id: int
    interface: int = 0
    in_ep: int = 0x82
    out_ep: int = 0x01
    timeout: float = 5.0
    status_query: bool = True


class SerialPrinterConfig(_PrinterConfigBase, kw_only=True, frozen=True, tag="serial"):
    """A serial printer (``/dev/ttyS0``, ``/dev/ttyUSB0``, ``COM3``; needs pyserial)."""

    device: str
    baudrate: int = 9600
    #: Hardware flow control by DSR/DTR (python-escpos' default); false: none.
    dsrdtr: bool = True
    xonxoff: bool = False
    timeout: float = 5.0
    status_query: bool = True


class FilePrinterConfig(_PrinterConfigBase, kw_only=True, frozen=True, tag="file"):
    """A device node (``/dev/usb/lp0``); status by ``DLE EOT`` when the node can be read."""

    device: str
    timeout: float = 5.0
    status_query: bool = True


class CupsPrinterConfig(_PrinterConfigBase, kw_only=True, frozen=True, tag="cups"):
    """A raw CUPS queue (needs the ``cups`` extra)."""

    queue: str
    #: ``host``, ``host:port`` or a domain socket path; default: libcups' (``CUPS_SERVER``).
    server: str | None = None
    #: Seconds to wait for CUPS to finish the job; then it is cancelled so it never prints late.
    timeout: float = 60.0


class Win32PrinterConfig(_PrinterConfigBase, kw_only=True, frozen=True, tag="win32"):
    """A Windows spooler printer fed raw bytes (needs the ``windows`` extra)."""

    #: Spooler printer name; empty means the default printer.
    printer_name: str = ""
    #: Seconds to wait for the spooler to finish the job; then it is cancelled so it never
    #: prints late.
    timeout: float = 60.0


PrinterConfig = (
    VirtualPrinterConfig
    | NetworkPrinterConfig
    | UsbPrinterConfig
    | SerialPrinterConfig
    | FilePrinterConfig
    | CupsPrinterConfig
    | Win32PrinterConfig
)


def open_backend(config: PrinterConfig, data_dir: Path) -> PrinterBackend:
    """Build the backend for one configured printer.

    Backends import their optional dependencies here, not at module import, so a missing extra
    only fails the printer that needs it.
    """
    match config:
        case VirtualPrinterConfig():
            from ._virtual import VirtualPrinter

            directory = (
                Path(config.directory) if config.directory else data_dir / "virtual" / config.name
            )
            return VirtualPrinter(config.name, directory)
        case NetworkPrinterConfig():
            from ._network import NetworkPrinter

            return NetworkPrinter(
                config.name,
                config.host,
                config.port,
                timeout=config.timeout,
                status_query=config.status_query,
                status_timeout=config.status_timeout,
                idle_close=config.idle_close,
            )
        case UsbPrinterConfig():
            from ._usb import UsbPrinter

            return UsbPrinter(
                config.name,
                config.vendor_id,
                config.product_id,
                interface=config.interface,
                in_ep=config.in_ep,
                out_ep=config.out_ep,
                timeout=config.timeout,
                status_query=config.status_query,
            )
        case SerialPrinterConfig():
            from ._serial import SerialPrinter

            return SerialPrinter(
                config.name,
                config.device,
                baudrate=config.baudrate,
                dsrdtr=config.dsrdtr,
                xonxoff=config.xonxoff,
                timeout=config.timeout,
                status_query=config.status_query,
            )
        case FilePrinterConfig():
            from ._file import FilePrinter

            return FilePrinter(
                config.name,
                config.device,
                timeout=config.timeout,
                status_query=config.status_query,
            )
        case CupsPrinterConfig():
            from ._cups import CupsPrinter

            return CupsPrinter(
                config.name, config.queue, server=config.server, timeout=config.timeout
            )
        case Win32PrinterConfig():
            from ._win32 import Win32Printer

            return Win32Printer(config.name, config.printer_name, timeout=config.timeout)
    raise TypeError(f"unsupported printer config {config!r}")
