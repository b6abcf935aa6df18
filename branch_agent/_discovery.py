"""Printers the agent can see but has not been told about: CUPS queues, USB printers and,
when switched on, network printers answering on port 9100 (:mod:`._discovery_devices`).

The status snapshot carries them (``AgentStatus.discovered``: names; ``discovered_printers``:
each with a printer table ready for ``PUT .../agents/{a}/printers``) so the dashboard can offer
them as "discovered, not configured"; ``printermaster agent printers`` lists the CUPS queues with
their device and model.

Listing asks cupsd over IPC, libusb, or the network, all of which can block; the agent's status
is built on its event loop, so :func:`discovered_printers` never waits: it answers from the last
listing and starts a new one in a thread when that listing is older than ``discovery.interval``.
Where a source is unavailable (pycups or pyusb missing, no cupsd), it adds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from agent_config import AgentConfig
from protocol import DiscoveredPrinter

from ._discovery_devices import find_network, find_usb, local_subnets
from ._printers import (
    CupsPrinterConfig,
    CupsQueue,
    NetworkPrinterConfig,
    PrinterError,
    UsbPrinterConfig,
    discover_cups_queues,
)

log = logging.getLogger("branch_agent.discovery")


@dataclass(frozen=True)
class Discovery:
    """One listing: the queues not configured yet, or why there is no listing."""

    queues: list[CupsQueue]
    #: None when CUPS answered; otherwise what went wrong (pycups missing, cupsd unreachable).
    error: str | None = None
    #: Whether CUPS discovery is switched on in the config.
    enabled: bool = True
    #: USB and network printers not configured yet.
    devices: list[DiscoveredPrinter] = field(default_factory=list)
    #: Why USB or network discovery found nothing (pyusb missing, a subnet too large).
    device_errors: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [q.name for q in self.queues] + [d.name for d in self.devices]

    @property
    def printers(self) -> list[DiscoveredPrinter]:
        cups = [
            DiscoveredPrinter(
                kind="cups",
                name=q.name,
                description=q.make_and_model or q.device_uri,
                config={"kind": "cups", "name": q.name, "queue": q.name},
            )
            for q in self.queues
        ]
        return cups + self.devices


def configured_queues(config: AgentConfig) -> set[str]:
    """Names of the CUPS queues that configured printers use on the discovery server."""
    server = config.discovery.cups_server or None
    return {
        p.queue
        for p in config.printers
        if isinstance(p, CupsPrinterConfig) and (p.server or None) == server
    }


def _configured_usb(config: AgentConfig) -> set[tuple[int, int]]:
    return {(p.vendor_id, p.product_id) for p in config.printers if isinstance(p, UsbPrinterConfig)}


def _configured_network(config: AgentConfig) -> set[tuple[str, int]]:
    return {(p.host, p.port) for p in config.printers if isinstance(p, NetworkPrinterConfig)}


def discover_devices(config: AgentConfig) -> tuple[list[DiscoveredPrinter], list[str]]:
    """USB and (when on) network printers not configured yet (blocking)."""
    settings = config.discovery
    devices: list[DiscoveredPrinter] = []
    errors: list[str] = []
    if settings.usb:
        usb, error = find_usb(_configured_usb(config))
        devices += usb
        errors += [error] if error else []
    if settings.network:
        subnets = settings.network_subnets or local_subnets()
        network, error = find_network(
            subnets,
            port=settings.network_port,
            timeout=settings.network_timeout,
            max_hosts=settings.network_max_hosts,
            configured=_configured_network(config),
        )
        devices += network
        errors += [error] if error else []
    return devices, errors


def discover(config: AgentConfig) -> Discovery:
    """List everything not configured yet (blocking: call it from a thread or a CLI)."""
    devices, device_errors = discover_devices(config)
    if not config.discovery.cups:
        return Discovery([], enabled=False, devices=devices, device_errors=device_errors)
    try:
        queues = discover_cups_queues(config.discovery.cups_server)
    except PrinterError as exc:
        return Discovery([], error=exc.message, devices=devices, device_errors=device_errors)
    known = configured_queues(config)
    return Discovery(
        [q for q in queues if q.name not in known], devices=devices, device_errors=device_errors
    )


@dataclass
class _Entry:
    printers: list[DiscoveredPrinter]
    at: float
    running: bool = False
    #: Called on the caller's loop when a listing brings something new.
    notify: Callable[[], None] | None = None


_lock = threading.Lock()
_cache: dict[bytes, _Entry] = {}


def _key(config: AgentConfig) -> bytes:
    """What a listing depends on: the discovery settings and the printers configured."""
    return msgspec.json.encode((config.discovery, config.printers))


def _enabled(config: AgentConfig) -> bool:
    settings = config.discovery
    return settings.cups or settings.usb or settings.network


def discovered(
    config: AgentConfig, on_change: Callable[[], None] | None = None
) -> list[DiscoveredPrinter]:
    """Printers not configured, from the last listing; never blocks.

    The first call returns ``[]`` and starts a listing. When a listing finds something else
    than the one before, ``on_change`` is called (on the calling event loop, if there is one),
    so the agent publishes its status at once instead of at the next heartbeat.
    """
    if not _enabled(config):
        return []
    key = _key(config)
    now = time.monotonic()
    with _lock:
        entry = _cache.setdefault(key, _Entry([], at=float("-inf")))
        printers = list(entry.printers)
        if entry.running or now - entry.at < config.discovery.interval:
            return printers
        entry.running = True
        entry.notify = _on_loop(on_change) if on_change is not None else None
    threading.Thread(
        target=_refresh, args=(config, entry), name="printer-discovery", daemon=True
    ).start()
    return printers


def discovered_printers(config: AgentConfig) -> list[str]:
    """Names of the printers :func:`discovered` returns."""
    return [p.name for p in discovered(config)]


def _refresh(config: AgentConfig, entry: _Entry) -> None:
    try:
        found = discover(config)
    except Exception:  # a pycups or pyusb surprise must not kill discovery for good
        log.exception("listing printers failed")
        found = Discovery([], error="unexpected error")
    for error in ([found.error] if found.error else []) + found.device_errors:
        log.debug("discovery: %s", error)
    with _lock:
        changed = found.printers != entry.printers
        entry.printers = found.printers
        entry.at = time.monotonic()
        entry.running = False
        notify = entry.notify
    if changed and notify is not None:
        notify()


def _on_loop(callback: Callable[[], None]) -> Callable[[], None]:
    """``callback``, called from any thread on the event loop running now (if any)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return callback

    def call() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(callback)

    return call
