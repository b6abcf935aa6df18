"""Printers found on the USB bus and on the local network (port 9100), not yet configured.

USB: every device with a printer-class interface (USB class 7) or from a maker of receipt
printers (:data:`RECEIPT_VENDORS`), listed through pyusb (``usb`` extra, libusb). Listing reads
the descriptors the OS has cached: it opens no device and sends nothing to a printer.

Network: a TCP connect to the raw printing port (9100) of every host of the subnets given, or,
when none are given, of the machine's own IPv4 subnets (loopback and link-local left out, each
narrowed to its /24 when larger). Nothing is sent: a connection is opened and closed, so no
printer prints a byte. Off by default (``discovery.network``): a scan of the shop's network is
something its owner switches on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterable
from typing import Any, Final

from protocol import DiscoveredPrinter

log = logging.getLogger("branch_agent.discovery")

#: USB vendor ids of receipt printer makers (and of the chips cheap ones are built on).
RECEIPT_VENDORS: Final[dict[int, str]] = {
    0x04B8: "Epson",
    0x0519: "Star Micronics",
    0x1504: "Bixolon",
    0x0DD4: "Custom",
    0x154F: "SNBC",
    0x1D90: "Citizen",
    0x0FE6: "ICS (Xprinter, Rongta)",
    0x0416: "Winbond (Xprinter, Zjiang)",
    0x28E9: "GigaDevice (POS-58/80)",
}
USB_CLASS_PRINTER: Final = 7
#: Hosts probed at once.
_CONCURRENCY: Final = 64


def usb_name(vendor_id: int, product_id: int) -> str:
    """The suggested printer id of a USB printer: ``usb-04b8-0e15``."""
    return f"usb-{vendor_id:04x}-{product_id:04x}"


def network_name(host: str, port: int) -> str:
    """The suggested printer id of a network printer: ``net-192.168.1.50-9100``."""
    return f"net-{host}-{port}"


def _usb_devices() -> Iterable[Any]:
    """The seam: pyusb's device list (tests replace ``usb.core.find``)."""
    import usb.core

    return list(usb.core.find(find_all=True) or ())


def _is_printer(device: Any) -> bool:
    if getattr(device, "bDeviceClass", 0) == USB_CLASS_PRINTER:
        return True
    with contextlib.suppress(Exception):  # descriptors a backend cannot read: not a printer
        for configuration in device:
            for interface in configuration:
                if getattr(interface, "bInterfaceClass", 0) == USB_CLASS_PRINTER:
                    return True
    return False


def find_usb(configured: set[tuple[int, int]]) -> tuple[list[DiscoveredPrinter], str | None]:
    """USB printers not in ``configured`` (vendor, product), and why none could be listed."""
    try:
        devices = _usb_devices()
    except ImportError:
        return [], "pyusb is not installed (install the `usb` extra)"
    except Exception as exc:  # NoBackendError (no libusb), permissions, ...
        return [], f"cannot list USB devices: {exc}"
    found: dict[tuple[int, int], DiscoveredPrinter] = {}
    for device in devices:
        vendor, product = int(device.idVendor), int(device.idProduct)
        maker = RECEIPT_VENDORS.get(vendor)
        if (vendor, product) in configured or (maker is None and not _is_printer(device)):
            continue
        name = usb_name(vendor, product)
        found[(vendor, product)] = DiscoveredPrinter(
            kind="usb",
            name=name,
            description=f"{maker or 'USB printer'} {vendor:04x}:{product:04x}",
            config={"kind": "usb", "name": name, "vendor_id": vendor, "product_id": product},
        )
    return sorted(found.values(), key=lambda p: p.name), None


def local_subnets(max_prefix: int = 24) -> list[str]:
    """The machine's own IPv4 subnets, each at most a /``max_prefix`` around its address;
    loopback and link-local left out."""
    import psutil

    subnets: set[str] = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family != socket.AF_INET or not address.netmask:
                continue
            ip = ipaddress.IPv4Address(address.address)
            if ip.is_loopback or ip.is_link_local:
                continue
            network = ipaddress.IPv4Network(f"{ip}/{address.netmask}", strict=False)
            if network.prefixlen < max_prefix:
                network = ipaddress.IPv4Network(f"{ip}/{max_prefix}", strict=False)
            subnets.add(str(network))
    return sorted(subnets)


def scan_hosts(subnets: list[str], max_hosts: int) -> list[str]:
    """Every host address of ``subnets``; raises ValueError for a bad or too large one."""
    hosts: list[str] = []
    for text in subnets:
        network = ipaddress.ip_network(text, strict=False)
        if network.num_addresses > max_hosts:
            raise ValueError(
                f"subnet {network} has {network.num_addresses} addresses, more than "
                f"discovery.network_max_hosts ({max_hosts})"
            )
        if network.num_addresses == 1:
            hosts.append(str(network.network_address))
        else:
            hosts.extend(str(h) for h in network.hosts())
    return list(dict.fromkeys(hosts))


async def _open(host: str, port: int, wait_s: float, gate: asyncio.Semaphore) -> bool:
    async with gate:
        try:
            async with asyncio.timeout(wait_s):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True


async def _probe(hosts: list[str], port: int, wait_s: float) -> list[str]:
    gate = asyncio.Semaphore(_CONCURRENCY)
    results = await asyncio.gather(*(_open(h, port, wait_s, gate) for h in hosts))
    return [h for h, ok in zip(hosts, results, strict=True) if ok]


def find_network(
    subnets: list[str],
    *,
    port: int,
    timeout: float,
    max_hosts: int,
    configured: set[tuple[str, int]],
) -> tuple[list[DiscoveredPrinter], str | None]:
    """Hosts of ``subnets`` that accept a connection on ``port`` (blocking: a thread's work)."""
    try:
        hosts = scan_hosts(subnets, max_hosts)
    except ValueError as exc:
        return [], str(exc)
    hosts = [h for h in hosts if (h, port) not in configured]
    answered = asyncio.run(_probe(hosts, port, timeout)) if hosts else []
    return [
        DiscoveredPrinter(
            kind="network",
            name=network_name(host, port),
            description=f"port {port} open at {host}",
            config={
                "kind": "network",
                "name": network_name(host, port),
                "host": host,
                "port": port,
            },
        )
        for host in answered
    ], None
