"""The backend factory: a configured printer (:mod:`agent_config`'s tables) to its backend."""

from __future__ import annotations

from pathlib import Path

from agent_config import (
    CupsPrinterConfig,
    FilePrinterConfig,
    NetworkPrinterConfig,
    PrinterConfig,
    SerialPrinterConfig,
    UsbPrinterConfig,
    VirtualPrinterConfig,
    Win32PrinterConfig,
)

from ._base import PrinterBackend


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
