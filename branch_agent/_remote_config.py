"""Printers managed from the cloud: a retained, versioned configuration applied without a restart.

The cloud publishes :class:`protocol.PrintersConfig` retained on the agent's ``config`` topic.
Its ``printers`` are the printer tables of the TOML config (same schema, same checks). The agent:

* ignores a version it already has or an older one (a retained copy seen again on reconnect);
* validates the whole list and opens every new or changed backend before touching anything: a
  configuration that fails is refused as a whole (``config_error`` in the status, with the
  version and a ``CONFIG_INVALID`` error naming the bad key) and the printers stay as they were;
* applies the difference: an unchanged printer keeps its backend, queue and worker (a job on it
  is not disturbed); a changed one gets its new backend for its next job (the job on paper
  finishes on the old one, which is closed after it); a removed one takes no further job, its
  waiting jobs fail ``PRINTER_NOT_FOUND`` and its worker ends after the job on paper; an added
  one gets a worker at once;
* keeps the applied configuration in ``{data_dir}/remote-config.json``, so a restart (even
  without the broker) starts with the printers the cloud set, not the TOML's.

Once a remote configuration is applied, it replaces the TOML's ``printers`` list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from agent_config import AgentConfig, ConfigError, parse_printers
from protocol import (
    ConfigRejection,
    ErrorCode,
    PrintersConfig,
    ProtocolError,
    decode_printers_config,
    encode,
    error_info,
)

from ._jobs import Jobs, PrinterSlot
from ._ledger import JobState, Tx
from ._printers import PrinterBackend, PrinterConfig, open_backend

if TYPE_CHECKING:
    from ._agent import Agent

log = logging.getLogger("branch_agent.remote_config")

REMOTE_CONFIG_FILE: Final = "remote-config.json"
#: Seconds a removed or changed printer's job on paper may take before its worker is cut off.
RETIRE_GRACE_S: Final = 60.0


def is_local(remote: PrintersConfig) -> bool:
    """``printers: null``: the cloud hands the printers back to the agent's TOML."""
    return bytes(remote.printers).strip() == b"null"


def load_applied(config: AgentConfig) -> tuple[AgentConfig, int]:
    """``config`` with the printers of the last applied remote configuration, and its version
    (0 and ``config`` unchanged when there is none or it cannot be read)."""
    path = config.data_path / REMOTE_CONFIG_FILE
    try:
        stored = decode_printers_config(path.read_bytes())
        if is_local(stored):
            return config, stored.version
        printers = parse_printers(bytes(stored.printers))
    except FileNotFoundError:
        return config, 0
    except (OSError, ProtocolError, ConfigError) as exc:
        log.error("ignoring %s (%s): using the printers of the local config", path, exc)
        return config, 0
    return msgspec.structs.replace(config, printers=printers), stored.version


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class RemoteConfig:
    """The agent's side of remote printer configuration (see the module docstring)."""

    def __init__(self, config: AgentConfig) -> None:
        #: The printers of the local TOML, used again when the cloud clears its configuration.
        self._local = config.printers
        #: The agent's config with the printers in use.
        self.config, self.version = load_applied(config)
        self.error: ConfigRejection | None = None
        self._agent: Agent | None = None
        self._pending: PrintersConfig | None = None
        self._applying: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    def attach(self, agent: Agent) -> None:
        self._agent = agent

    def receive(self, payload: bytes) -> None:
        """A message on the config topic (called on the event loop; never raises)."""
        if not payload:
            return  # a cleared topic: the cloud hands printers back with a version instead
        try:
            config = decode_printers_config(payload)
        except ProtocolError as exc:
            log.warning("refusing a printer configuration: %s", exc.message)
            self._refuse(0, exc.message)
            return
        if config.version <= self.version:
            log.debug("printer configuration %d already applied", config.version)
            return
        self._pending = config  # only the newest one waiting is applied
        self._schedule()

    def _schedule(self) -> None:
        if self._applying is None or self._applying.done():
            self._applying = asyncio.get_running_loop().create_task(
                self._apply_pending(), name="remote-config"
            )

    async def _apply_pending(self) -> None:
        while self._pending is not None:
            config, self._pending = self._pending, None
            try:
                await self.apply(config)
            except Exception:  # a bug here must not leave the agent half-configured silently
                log.exception("applying printer configuration %d failed", config.version)
                self._refuse(config.version, "the agent failed to apply it (see its log)")

    def _refuse(self, version: int, text: str) -> None:
        self.error = ConfigRejection(
            version=version, error=error_info(ErrorCode.CONFIG_INVALID, text)
        )
        self._changed()

    def _changed(self) -> None:
        if self._agent is not None:
            self._agent._status_dirty.set()

    async def apply(self, remote: PrintersConfig) -> None:
        """Validate ``remote`` and apply it, or refuse it as a whole."""
        agent = self._agent
        assert agent is not None, "attach() the agent first"
        local = is_local(remote)
        if remote.version <= self.version:
            return
        current = {p.name: p for p in self.config.printers}
        try:
            printers = list(self._local) if local else parse_printers(bytes(remote.printers))
            opening = [p for p in printers if current.get(p.name) != p]
            opened = await asyncio.to_thread(_open_all, opening, agent.config.data_path)
        except ConfigError as exc:
            log.warning("refusing printer configuration %d: %s", remote.version, exc)
            self._refuse(remote.version, str(exc))
            return
        wanted = {p.name for p in printers}
        # No await from here to the new worker list: the agent's printers and its workers
        # (which it stops pairwise) change together.
        workers = dict(zip(agent.printers, agent._workers, strict=False))
        removed = [agent.printers.pop(n) for n in [n for n in agent.printers if n not in wanted]]
        for slot in removed:
            slot.waiting.clear()  # its worker takes none of them any more
            self._retire(slot, workers.pop(slot.backend.name, None), slot.backend)
        for printer in printers:
            backend = opened.get(printer.name)
            if backend is None:
                continue  # unchanged
            existing = agent.printers.get(printer.name)
            if existing is None:
                slot = agent.printers[printer.name] = PrinterSlot(backend)
                workers[printer.name] = asyncio.get_running_loop().create_task(
                    agent.jobs.run_printer(slot), name=f"printer:{printer.name}"
                )
            else:
                old = existing.backend
                existing.backend = backend
                existing.reading = type(existing.reading)()
                existing.last_error = None
                self._retire(existing, None, old)
        agent._workers = [workers[n] for n in agent.printers]
        for slot in removed:
            await _fail_waiting(agent.jobs, slot.backend.name, agent.agent_id)
        path = agent.config.data_path / REMOTE_CONFIG_FILE
        await asyncio.to_thread(_write_atomic, path, encode(remote))
        self.config = msgspec.structs.replace(self.config, printers=printers)
        agent.config = msgspec.structs.replace(agent.config, printers=printers)
        self.version = remote.version
        if self.error is not None and self.error.version <= remote.version:
            self.error = None
        log.info(
            "printer configuration %d applied: %s (%d opened)",
            remote.version,
            ", ".join(sorted(wanted)) or "no printers",
            len(opened),
        )
        self._changed()

    def _retire(
        self, slot: PrinterSlot, worker: asyncio.Task[None] | None, backend: PrinterBackend
    ) -> None:
        """After the job on paper (if any): end ``worker`` and close ``backend``."""
        task = asyncio.get_running_loop().create_task(
            _retire(slot, worker, backend), name=f"retire:{backend.name}"
        )
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


def _open_all(printers: list[PrinterConfig], data_dir: Path) -> dict[str, PrinterBackend]:
    opened: dict[str, PrinterBackend] = {}
    try:
        for printer in printers:
            try:
                opened[printer.name] = open_backend(printer, data_dir)
            except Exception as exc:
                raise ConfigError(
                    f"printer {printer.name!r} ({type(printer).__struct_config__.tag}): "
                    "cannot be set up: "
                    f"{getattr(exc, 'message', None) or exc}"
                ) from exc
    except ConfigError:
        for backend in opened.values():
            with contextlib.suppress(Exception):
                backend.close()
        raise
    return opened


async def _fail_waiting(jobs: Jobs, name: str, agent_id: str) -> None:
    """Jobs for a removed printer that have not started end ``failed`` with
    ``PRINTER_NOT_FOUND``: the ones waiting in its queue, and one admitted while it was being
    removed (committed to the ledger before this, which runs after it in the ledger's order)."""
    from ._worker import STARTABLE, _failed, end

    def op(tx: Tx) -> int:
        ended = 0
        for state in STARTABLE:
            for job in tx.in_state(state):
                if job.printer != name:
                    continue
                text = f"agent {agent_id} has no printer {job.printer!r} any more"
                failed = _failed(job.job_id, ErrorCode.PRINTER_NOT_FOUND, text)
                ended += end(
                    tx, job, JobState.FAILED, failed, ErrorCode.PRINTER_NOT_FOUND, STARTABLE
                )
        return ended

    ended = await jobs._ledger.call(op)
    if ended:
        log.info("printer %s removed: %d waiting job(s) failed PRINTER_NOT_FOUND", name, ended)


async def _retire(
    slot: PrinterSlot, worker: asyncio.Task[None] | None, backend: PrinterBackend
) -> None:
    deadline = time.monotonic() + RETIRE_GRACE_S
    # The worker takes the slot's backend at each job: wait out the one on paper, if any.
    # PrinterSlot has no "idle" event to wait on; a retirement is rare and short.
    while slot.busy is not None and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if worker is not None:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await worker
    try:
        await asyncio.to_thread(backend.close)
    except Exception:
        log.exception("closing %s failed", backend.name)
