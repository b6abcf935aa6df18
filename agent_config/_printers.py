"""Printer tables of the agent's config: a tagged union on ``kind``.

The agent opens a backend for each (``branch_agent``); the cloud renders and checks them (the
TOML of a new agent, a printer list sent over MQTT) without any printer library.
"""

from __future__ import annotations

import msgspec

from protocol import ProtocolError, validate_id

from ._errors import ConfigError


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


_printers_decoder = msgspec.json.Decoder(list[PrinterConfig])


def parse_printers(raw: bytes, source: str = "printers") -> list[PrinterConfig]:
    """Decode and check a printer list as the TOML's ``printers`` is checked; raises
    :class:`ConfigError` naming the bad key."""
    try:
        printers = _printers_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not a JSON list of printer tables: {exc}") from exc
    names: list[str] = []
    for i, printer in enumerate(printers):
        try:
            names.append(validate_id(printer.name, f"{source}[{i}].name"))
        except ProtocolError as exc:
            raise ConfigError(exc.message) from exc
        if isinstance(printer, NetworkPrinterConfig) and not 1 <= printer.port <= 65535:
            raise ConfigError(f"{source}[{i}].port must be 1-65535, got {printer.port}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: names must be unique, got {names}")
    return printers
