"""The reply outbox: replies leave in ledger order and are forgotten only on the broker's PUBACK.

Every reply is first committed to the ledger's ``outbox`` table (see :mod:`._ledger`), together
with the job state it reports. The outbox publishes pending replies in ``seq`` order while a
session is up and deletes each on its PUBACK. A reply that was not acknowledged when the
connection broke (or that was produced while disconnected) is published again, in order, on the
next session: the cloud may see a reply twice, never zero times, and never a job's final reply
before an earlier reply of that job.

Progress replies (``accepted``, ``printing``) are held back for up to ``hold`` seconds
(``PROGRESS_HOLD_S``). When the job's ``done`` reply is committed first, the ledger has already
deleted them in that transaction (``OutboxEntry.supersedes``) and they are dropped unsent: a job
that prints within the hold is answered with its final alone, one reply instead of three (a
``failed`` reply takes them along ahead of it, like ``waiting``, so a failure shows where it
happened). A job
that takes longer reports each stage ``hold`` seconds after reaching it. A ``waiting`` reply
goes at once and takes the job's held replies with it, ahead of it, so the order per job and
reply topic is always the ledger's. Replies of different jobs may pass a held one.

The deletions need no commit of their own: losing one in a crash only sends that reply once more.
They ride along with the ledger's next transaction (the next job's intake, say), or go on their
own after ``FLUSH_DELAY_S`` when no transaction comes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import heapq
import logging
from collections.abc import Awaitable, Callable

from ._ledger import Ledger, LedgerOp, OutboxEntry, Tx

log = logging.getLogger("branch_agent.outbox")

#: Hands one reply to the MQTT client at once; what it returns completes on the PUBACK.
Publish = Callable[[OutboxEntry], Awaitable[None]]

#: Seconds acknowledged replies wait for a ledger transaction to ride along with.
FLUSH_DELAY_S = 0.25
#: Seconds a progress reply waits for the job's final to replace it: well over what a job on a
#: fast printer takes from intake to final, even with an fsync per commit on a loaded machine
#: (so it is answered with one reply), and well under the API's wait for ``accepted`` (3 s for
#: a test print) and what someone watching a slow printer's job would call a delay.
PROGRESS_HOLD_S = 0.5

_Key = tuple[str, str]


class _Session:
    """One broker session's publishing state."""

    def __init__(self, publish: Publish, backlog: collections.deque[OutboxEntry]) -> None:
        self.publish = publish
        #: Replies not handed to ``publish`` yet, in ``seq`` order (per job).
        self.backlog = backlog
        #: Replies handed over and waiting for their PUBACK.
        self.in_flight: set[asyncio.Future[None]] = set()
        #: Their ``seq``s: a reply replaced after it left still counts as sent.
        self.handed: set[int] = set()


class Outbox:
    """Pending replies, mirrored from the ledger, and the per-session publisher."""

    def __init__(self, ledger: Ledger, *, window: int = 100, hold: float = PROGRESS_HOLD_S) -> None:
        #: Called with each progress reply dropped unsent, before the final that replaced it
        #: is handed to the publisher (the agent's stage histogram still counts its stage).
        self.on_fold: Callable[[OutboxEntry], None] | None = None
        self._ledger = ledger
        self._window = window
        self._hold = hold
        self._pending: dict[int, OutboxEntry] = {}
        #: Progress replies held back, per job and topic in ``seq`` order, and when each goes.
        self._held: dict[_Key, list[int]] = {}
        self._releases: list[tuple[float, int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._session: _Session | None = None
        self._empty = asyncio.Event()
        self._empty.set()
        #: Acknowledged replies whose deletion is not submitted yet.
        self._acked: list[int] = []
        self.published = 0
        #: Progress replies dropped unsent because the job's final replaced them.
        self.folded = 0
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

        During a session they are handed to the publisher here and now, behind any backlog,
        except progress replies, which are held (see the module docstring).
        """
        session = self._session
        now = asyncio.get_running_loop().time()
        for entry in entries:
            if entry.seq in self._pending:
                continue
            for seq in entry.supersedes:
                self._replace(seq, session)
            self._pending[entry.seq] = entry
            key = entry.key
            if entry.progress and key is not None and self._hold > 0:
                release = now + self._hold
                self._held.setdefault(key, []).append(entry.seq)
                heapq.heappush(self._releases, (release, entry.seq))
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_at(release, self._release_due)
                continue
            if key in self._held:  # the job's held replies go first
                for seq in self._held.pop(key):
                    self._enqueue(self._pending[seq], session)
            self._enqueue(entry, session)
        if self._pending:
            self._empty.clear()
        if session is not None:
            self._send(session)

    def _replace(self, seq: int, session: _Session | None) -> None:
        """Forget progress reply ``seq``: a final replaced it (its row is gone already)."""
        entry = self._pending.pop(seq, None)
        if entry is None:  # acknowledged already
            return
        if session is not None and seq in session.handed:
            return  # sent already: its PUBACK is still welcome, its row is gone
        self.folded += 1
        if self.on_fold is not None:
            self.on_fold(entry)
        key = entry.key
        held = self._held.get(key) if key is not None else None
        if held is not None and seq in held:
            held.remove(seq)
            if not held:
                del self._held[key]  # type: ignore[arg-type]

    def _enqueue(self, entry: OutboxEntry, session: _Session | None) -> None:
        if session is not None:
            session.backlog.append(entry)

    def _release_due(self) -> None:
        """Let held replies whose time has come go, in order."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        session = self._session
        while self._releases and self._releases[0][0] <= now:
            _, seq = heapq.heappop(self._releases)
            entry = self._pending.get(seq)
            key = entry.key if entry is not None else None
            held = self._held.get(key) if key is not None else None
            if entry is None or held is None or seq not in held:
                continue  # replaced, or taken along by a later reply
            # Held replies of one job are due in ``seq`` order: this is the first.
            held.remove(seq)
            if not held:
                del self._held[key]  # type: ignore[arg-type]
            self._enqueue(entry, session)
        if self._releases:
            self._timer = loop.call_at(self._releases[0][0], self._release_due)
        if session is not None:
            self._send(session)

    def _release_all(self) -> None:
        held, self._held = self._held, {}
        if self._session is not None:
            for seqs in held.values():
                for seq in seqs:
                    self._session.backlog.append(self._pending[seq])
            self._send(self._session)

    async def pump(self, publish: Publish) -> None:
        """Publish pending replies for one session, oldest first, until cancelled.

        Each reply is handed to ``publish`` in ``seq`` order (held ones when their time
        comes), so the wire order per job is the ledger order; up to ``window`` replies wait
        for their PUBACK at once (the others wait their turn). Replies committed during the
        session go out as their commit is heard.
        """
        if self._session is not None:
            raise RuntimeError("the outbox serves one session at a time")
        held = {seq for seqs in self._held.values() for seq in seqs}
        backlog = collections.deque(
            entry for seq, entry in sorted(self._pending.items()) if seq not in held
        )
        session = self._session = _Session(publish, backlog)
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
                continue  # replaced by the job's final while it waited its turn
            try:
                ack: asyncio.Future[None] = asyncio.ensure_future(session.publish(entry))
            except Exception as exc:  # the session is breaking; it goes out on the next one
                log.info("reply %d for %s not published: %s", entry.seq, entry.job_id, exc)
                continue
            in_flight.add(ack)
            session.handed.add(entry.seq)
            ack.add_done_callback(functools.partial(self._on_ack, session, entry))

    def _on_ack(self, session: _Session, entry: OutboxEntry, ack: asyncio.Future[None]) -> None:
        session.in_flight.discard(ack)
        session.handed.discard(entry.seq)
        if ack.cancelled():
            return
        exc = ack.exception()
        if exc is not None:  # the session is breaking; the reply goes out on the next one
            log.info("reply %d for %s not acknowledged: %s", entry.seq, entry.job_id, exc)
        else:
            self.published += 1
            # A reply replaced while in flight has no row left to delete.
            if self._pending.pop(entry.seq, None) is not None:
                if not self._acked:
                    self._ledger.ride_along(self._take_acked, FLUSH_DELAY_S)
                self._acked.append(entry.seq)
            if not self._pending:
                self._empty.set()
        if session.backlog and session is self._session:
            self._send(session)

    def _take_acked(self) -> LedgerOp | None:
        """The deletion of every reply acknowledged so far (called by the ledger)."""
        seqs, self._acked = self._acked, []
        return functools.partial(Tx.outbox_remove, seqs=seqs) if seqs else None

    async def drain(self, seconds: float) -> bool:
        """Send held replies now and wait until every pending reply is acknowledged (True) or
        ``seconds`` pass."""
        self._release_all()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._empty.wait()
        return self._empty.is_set()

    async def close(self) -> None:
        """Let the last deletions reach the ledger."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._ledger.flush_riders()
