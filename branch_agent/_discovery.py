"""Printers the agent can see but has not been told about: the queues of the CUPS server.

The status snapshot carries their names (``AgentStatus.discovered``) so the dashboard can offer
them; ``printermaster agent printers`` lists them with their device and model.

Listing asks cupsd over IPC, which can block; the agent's status is built on its event loop, so
:func:`discovered_printers` never waits: it answers from the last listing and starts a new one in
a thread when that listing is older than ``discovery.interval``. Where pycups is missing (Windows,
an agent installed without the ``cups`` extra) or no cupsd answers, the list is empty.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from ._config import AgentConfig
from ._printers import CupsPrinterConfig, CupsQueue, PrinterError, discover_cups_queues

log = logging.getLogger("branch_agent.discovery")


@dataclass(frozen=True)
class Discovery:
    """One listing: the queues not configured yet, or why there is no listing."""

    queues: list[CupsQueue]
    #: None when CUPS answered; otherwise what went wrong (pycups missing, cupsd unreachable).
    error: str | None = None
    #: Whether discovery is switched on in the config.
    enabled: bool = True

    @property
    def names(self) -> list[str]:
        return [q.name for q in self.queues]


def configured_queues(config: AgentConfig) -> set[str]:
    """Names of the CUPS queues that configured printers use on the discovery server."""
    server = config.discovery.cups_server or None
    return {
        p.queue
        for p in config.printers
        if isinstance(p, CupsPrinterConfig) and (p.server or None) == server
    }


def discover(config: AgentConfig) -> Discovery:
    """List CUPS queues not configured yet (blocking: call it from a thread or a CLI)."""
    if not config.discovery.cups:
        return Discovery([], enabled=False)
    try:
        queues = discover_cups_queues(config.discovery.cups_server)
    except PrinterError as exc:
        return Discovery([], error=exc.message)
    known = configured_queues(config)
    return Discovery([q for q in queues if q.name not in known])


@dataclass
class _Entry:
    names: list[str]
    at: float
    running: bool = False


_lock = threading.Lock()
_cache: dict[tuple[str | None, frozenset[str]], _Entry] = {}


def discovered_printers(config: AgentConfig) -> list[str]:
    """Names of unconfigured CUPS queues from the last listing; never blocks.

    The first call returns ``[]`` and starts a listing; the status published after it finishes
    (the next heartbeat or change) carries the names.
    """
    if not config.discovery.cups:
        return []
    key = (config.discovery.cups_server, frozenset(configured_queues(config)))
    now = time.monotonic()
    with _lock:
        entry = _cache.setdefault(key, _Entry([], at=float("-inf")))
        names = list(entry.names)
        if entry.running or now - entry.at < config.discovery.interval:
            return names
        entry.running = True
    threading.Thread(
        target=_refresh, args=(config, entry), name="cups-discovery", daemon=True
    ).start()
    return names


def _refresh(config: AgentConfig, entry: _Entry) -> None:
    try:
        found = discover(config)
    except Exception:  # a pycups surprise must not kill discovery for good
        log.exception("listing CUPS queues failed")
        found = Discovery([], error="unexpected error")
    if found.error:
        log.debug("no CUPS queues listed: %s", found.error)
    with _lock:
        entry.names = found.names
        entry.at = time.monotonic()
        entry.running = False
