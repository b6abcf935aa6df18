"""The reply outbox: replies leave in ledger order and are forgotten only on the broker's PUBACK.

Every reply is first committed to the ledger's ``outbox`` table (see :mod:`._ledger`), together
with the job state it reports. The outbox publishes pending replies in ``seq`` order while a
session is up and deletes each on its PUBACK. A reply that was not acknowledged when the
connection broke (or that was produced while disconnected) is published again, in order, on the
next session: the cloud may see a reply twice, never zero times, and never a job's final reply
before its ``accepted``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable

from ._ledger import Ledger, OutboxEntry, Tx

log = logging.getLogger("branch_agent.outbox")

Publish = Callable[[OutboxEntry], Awaitable[None]]

#: Seconds acknowledged replies wait before their deletion is committed (batched).
FLUSH_DELAY_S = 0.25


class Outbox:
    """Pending replies, mirrored from the ledger, and the per-session publisher."""

    def __init__(self, ledger: Ledger, *, window: int = 100) -> None:
        self._ledger = ledger
        self._window = window
        self._pending: dict[int, OutboxEntry] = {}
        self._session: collections.deque[OutboxEntry] | None = None
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._acked: list[int] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self._close_now = asyncio.Event()
        self.published = 0
        ledger.on_outbox(self.add)

    def __len__(self) -> int:
        return len(self._pending)

    async def load(self) -> int:
        """Take over the replies a previous run left undelivered; returns how many."""
        entries = await self._ledger.call(lambda tx: tx.outbox())
        self.add(entries)
        return len(entries)

    def add(self, entries: list[OutboxEntry]) -> None:
        """New committed replies, in ``seq`` order (called by the ledger on the event loop)."""
        for entry in entries:
            if entry.seq in self._pending:
                continue
            self._pending[entry.seq] = entry
            if self._session is not None:
                self._session.append(entry)
        if self._pending:
            self._empty.clear()
            self._wake.set()

    async def pump(self, publish: Publish) -> None:
        """Publish pending replies for one session, oldest first, until cancelled.

        Up to ``window`` replies are in flight at once. Each publish is started in ``seq`` order
        (the task's first step hands the packet to paho), so the wire order is the ledger order.
        """
        self._session = collections.deque(self._pending.values())
        window = asyncio.Semaphore(self._window)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                while not self._session:
                    self._wake.clear()
                    await self._wake.wait()
                entry = self._session.popleft()
                if entry.seq not in self._pending:
                    continue
                await window.acquire()
                task = asyncio.create_task(self._send(publish, entry, window))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            self._session = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, publish: Publish, entry: OutboxEntry, window: asyncio.Semaphore) -> None:
        try:
            await publish(entry)
        except Exception as exc:  # the session is breaking; the reply goes out on the next one
            log.info("reply %d for %s not acknowledged: %s", entry.seq, entry.job_id, exc)
            return
        finally:
            window.release()
        self.published += 1
        self._pending.pop(entry.seq, None)
        if not self._pending:
            self._empty.set()
        self._acked.append(entry.seq)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="outbox-flush")

    async def _flush(self) -> None:
        """Delete acknowledged replies from the ledger, in batches (losing a delete in a crash
        only means the reply is sent once more). A job's replies are acknowledged one after
        the other (accepted, printing, done): waiting ``FLUSH_DELAY_S`` lets one commit delete
        them all instead of one commit each."""
        try:
            if not self._closing:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FLUSH_DELAY_S):
                        await self._close_now.wait()
            while self._acked:
                seqs, self._acked = self._acked, []
                try:
                    await self._ledger.call(functools.partial(Tx.outbox_remove, seqs=seqs))
                except Exception:
                    log.exception("could not delete %d delivered replies", len(seqs))
        finally:
            self._flusher = None

    async def drain(self, seconds: float) -> bool:
        """Wait until every pending reply is acknowledged (True) or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._empty.wait()
        return self._empty.is_set()

    async def close(self) -> None:
        """Let the last batch of deletions reach the ledger."""
        self._closing = True
        self._close_now.set()
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
