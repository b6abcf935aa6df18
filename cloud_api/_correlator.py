"""Pending RPCs keyed by correlation data (the job id).

The reply subscription exists before any request is published, every pending entry is removed in
``finally``, and a late, unknown or forged reply is logged and dropped, never raised. This is the
structural fix for the legacy system's lost replies: no per-request listener, no race.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from protocol import DecodeError, Done, Failed, Reply, decode_reply

log = logging.getLogger("cloud_api.rpc")


@dataclass
class Pending:
    """One request in flight: two futures, one per stage."""

    job_id: str
    branch_id: str
    #: the agent the request went to: only its replies count
    agent_id: str
    accepted: asyncio.Future[Reply]
    final: asyncio.Future[Done | Failed]


class Correlator:
    def __init__(self) -> None:
        self._pending: dict[bytes, Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def has(self, correlation: bytes) -> bool:
        return correlation in self._pending

    @contextlib.contextmanager
    def expect(self, job_id: str, branch_id: str, agent_id: str) -> Iterator[Pending]:
        """Register a pending request for the duration of the ``with`` block."""
        key = job_id.encode("ascii")
        loop = asyncio.get_running_loop()
        pending = Pending(job_id, branch_id, agent_id, loop.create_future(), loop.create_future())
        self._pending[key] = pending
        try:
            yield pending
        finally:
            del self._pending[key]

    def deliver(
        self, branch_id: str, agent_id: str, correlation: bytes | None, payload: bytes
    ) -> None:
        """Route one reply; anything that matches no pending request is dropped with a log."""
        pending = self._pending.get(correlation) if correlation is not None else None
        if pending is None:
            log.info("dropping late or unknown reply (correlation %r)", (correlation or b"")[:64])
            return
        if branch_id != pending.branch_id:
            # Only the request's own branch may answer it: a reply for job X published on
            # another branch's reply topic is a forgery (or a bug), never a result.
            log.warning(
                "dropping reply for job %s from branch %s: the job belongs to branch %s",
                pending.job_id,
                branch_id,
                pending.branch_id,
            )
            return
        if agent_id != pending.agent_id:
            # The broker lets each agent publish only on its own reply topics: another agent
            # of the branch answering this request is a forgery.
            log.warning(
                "dropping reply for job %s from agent %s: the request went to agent %s",
                pending.job_id,
                agent_id,
                pending.agent_id,
            )
            return
        try:
            reply = decode_reply(payload)
        except DecodeError as exc:
            log.warning("dropping malformed reply for job %s: %s", pending.job_id, exc.message)
            return
        if not pending.accepted.done():
            pending.accepted.set_result(reply)
        if isinstance(reply, Done | Failed) and not pending.final.done():
            pending.final.set_result(reply)
