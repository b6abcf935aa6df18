"""The reply outbox: replies leave in ledger order and are forgotten only on the broker's PUBACK.

Every reply is first committed to the ledger's ``outbox`` table (see :mod:`._ledger`), together
with the job state it reports. The outbox publishes pending replies in ``seq`` order while a
session is up and deletes each on its PUBACK. A reply that was not acknowledged when the
connection broke (or that was produced while disconnected) is published again, in order, on the
next session: the cloud may see a reply twice, never zero times, and never a job's final reply
before its ``accepted``.

The deletions need no commit of their own: losing one in a crash only sends that reply once more.
They ride along with the ledger's next transaction (the next job's intake, say), or go on their
own after ``FLUSH_DELAY_S`` when no transaction comes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable

from ._ledger import Ledger, LedgerOp, OutboxEntry, Tx

log = logging.getLogger("branch_agent.outbox")

#: Hands one reply to the MQTT client at once; what it returns completes on the PUBACK.
Publish = Callable[[OutboxEntry], Awaitable[None]]

#: Seconds acknowledged replies wait for a ledger transaction to ride along with.
FLUSH_DELAY_S = 0.25


class _Session:
    """One broker session's publishing state."""

    def __init__(self, publish: Publish, backlog: collections.deque[OutboxEntry]) -> None:
        self.publish = publish
        #: Replies not handed to ``publish`` yet, in ``seq`` order.
        self.backlog = backlog
        #: Replies handed over and waiting for their PUBACK.
        self.in_flight: set[asyncio.Future[None]] = set()


class Outbox:
    """Pending replies, mirrored from the ledger, and the per-session publisher."""

    def __init__(self, ledger: Ledger, *, window: int = 100) -> None:
        self._ledger = ledger
        self._window = window
        self._pending: dict[int, OutboxEntry] = {}
        self._session: _Session | None = None
        self._empty = asyncio.Event()
        self._empty.set()
        #: Acknowledged replies whose deletion is not submitted yet.
        self._acked: list[int] = []
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
        """New committed replies, in ``seq`` order (called by the ledger on the event loop).

        During a session they are handed to the publisher here and now, behind any backlog.
        """
        session = self._session
        for entry in entries:
            if entry.seq in self._pending:
                continue
            self._pending[entry.seq] = entry
            if session is not None:
                session.backlog.append(entry)
        if self._pending:
            self._empty.clear()
        if session is not None:
            self._send(session)

    async def pump(self, publish: Publish) -> None:
        """Publish pending replies for one session, oldest first, until cancelled.

        Each reply is handed to ``publish`` in ``seq`` order, so the wire order is the ledger
        order; up to ``window`` replies wait for their PUBACK at once (the others wait their
        turn). Replies committed during the session go out as their commit is heard.
        """
        if self._session is not None:
            raise RuntimeError("the outbox serves one session at a time")
        session = self._session = _Session(publish, collections.deque(self._pending.values()))
        try:
            self._send(session)
            await asyncio.get_running_loop().create_future()  # until the session ends
        finally:
            self._session = None
            for ack in session.in_flight:
                ack.cancel()
            await asyncio.gather(*session.in_flight, return_exceptions=True)

    def _send(self, session: _Session) -> None:
        backlog, in_flight = session.backlog, session.in_flight
        while backlog and len(in_flight) < self._window:
            entry = backlog.popleft()
            if entry.seq not in self._pending:
                continue
            try:
                ack: asyncio.Future[None] = asyncio.ensure_future(session.publish(entry))
            except Exception as exc:  # the session is breaking; it goes out on the next one
                log.info("reply %d for %s not published: %s", entry.seq, entry.job_id, exc)
                continue
            in_flight.add(ack)
            ack.add_done_callback(functools.partial(self._on_ack, session, entry))

    def _on_ack(self, session: _Session, entry: OutboxEntry, ack: asyncio.Future[None]) -> None:
        session.in_flight.discard(ack)
        if ack.cancelled():
            return
        exc = ack.exception()
        if exc is not None:  # the session is breaking; the reply goes out on the next one
            log.info("reply %d for %s not acknowledged: %s", entry.seq, entry.job_id, exc)
        else:
            self.published += 1
            self._pending.pop(entry.seq, None)
            if not self._pending:
                self._empty.set()
            if not self._acked:
                self._ledger.ride_along(self._take_acked, FLUSH_DELAY_S)
            self._acked.append(entry.seq)
        if session.backlog and session is self._session:
            self._send(session)

    def _take_acked(self) -> LedgerOp | None:
        """The deletion of every reply acknowledged so far (called by the ledger)."""
        seqs, self._acked = self._acked, []
        return functools.partial(Tx.outbox_remove, seqs=seqs) if seqs else None

    async def drain(self, seconds: float) -> bool:
        """Wait until every pending reply is acknowledged (True) or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._empty.wait()
        return self._empty.is_set()

    async def close(self) -> None:
        """Let the last deletions reach the ledger."""
        await self._ledger.flush_riders()
