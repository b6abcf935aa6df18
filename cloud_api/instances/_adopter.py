"""Each API instance holds a lease; a survivor adopts the work of an instance whose lease
expired (docs/operations.md, "Several API instances").

Adoption of a dead instance ``D`` by survivor ``S``, in this order:

1. ``S`` wins the claim on ``D``'s expired lease (a conditional update: one survivor only).
2. ``S`` subscribes to ``D``'s reply filter on every broker (kept across reconnects): from now
   on a reply an agent sends to ``D``'s topic reaches ``S``.
3. ``S`` drains ``D``'s persistent session on every broker (:func:`drain_session`): the replies
   queued there since ``D`` died are applied; the session then ends.
4. ``S`` takes over ``D``'s in-flight jobs (``sent_by``) and asks each agent again through its own
   reply topic; the agent's ledger answers a job it holds (its final, or ``accepted`` and the
   final later to the latest asker) and never prints it twice; a job it never got is taken, or
   refused as expired past its deadline. From then on the sweeper resends and times them out.

A reply in flight during any step reaches ``S`` through 2 or 3 (replies are conditional
transitions, so one applied twice changes nothing), and one lost anyway is asked for again in 4.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import aiomqtt

from protocol import reply_filter

from .._settings import ApiSettings, MqttClientSettings
from ..store import JobRecord, Store
from ._drain import drain_session
from ._leases import Lease, Leases

log = logging.getLogger("cloud_api.instances")

#: Seconds an adopted instance's lease row is kept (for the record), then removed.
FORGET_ADOPTED_S = 24 * 3600.0


class Link(Protocol):
    """What adoption needs of an MQTT session (:class:`cloud_api.MqttLink`)."""

    on_reply: Callable[[str, str, bytes | None, bytes], None]

    async def follow(self, topic_filter: str) -> None: ...

    async def unfollow(self, topic_filter: str) -> None: ...


class InstanceLeases:
    """Renews this instance's lease and adopts dead instances; run with :meth:`run`."""

    def __init__(
        self,
        settings: ApiSettings,
        store: Store,
        links: Sequence[tuple[MqttClientSettings, Link]],
        adopt_jobs: Callable[[str], Awaitable[list[JobRecord]]],
    ) -> None:
        self.settings = settings
        self.instance_id = settings.instance_id
        self.store = store
        self.links = links
        self.adopt_jobs = adopt_jobs
        self.leases: Leases | None = None
        #: dead instances whose reply topics this one reads
        self.following: set[str] = set()
        #: instance id -> seconds from its lease's expiry to the end of its adoption
        self.adopted: dict[str, float] = {}
        #: this process's token in its lease row: another process under the same instance id
        #: (a configuration mistake) writes another one
        self.owner = secrets.token_hex(8)
        #: monotonic time of the last renewal (for readiness)
        self.renewed: float | None = None
        self._last_write = 0.0
        self._warned_twin = 0.0
        self._pruned = 0.0
        #: adoptions under way: they run beside the renewals, so a long one never lets this
        #: instance's own lease lapse
        self._adoptions: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        self.leases = leases = await Leases.open(self.store)
        started = True
        while True:
            try:
                # Look before renewing: a twin's renewal since ours is seen whatever the order
                # in which the two processes read and write.
                await self._look_around(leases, time.time())
                now = time.time()
                await leases.renew(
                    self.instance_id,
                    now,
                    self.settings.lease_ttl,
                    started=started,
                    owner=self.owner,
                )
                self._last_write = now
                self.renewed = time.monotonic()
                started = False
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lease renewal failed")
            try:
                await asyncio.sleep(self.settings.lease_renew)
            except asyncio.CancelledError:
                for task in self._adoptions:
                    task.cancel()
                raise

    async def all(self) -> list[Lease]:
        """Every lease in the store (empty until the table is open)."""
        return await self.leases.all() if self.leases is not None else []

    async def release(self) -> None:
        """A graceful stop: the lease ends now, so a survivor adopts at once."""
        if self.leases is not None:
            with contextlib.suppress(Exception):
                await self.leases.release(self.instance_id, time.time())

    async def _look_around(self, leases: Leases, now: float) -> None:
        if now - self._pruned > FORGET_ADOPTED_S / 24:
            self._pruned = now
            await leases.forget_adopted(now - FORGET_ADOPTED_S)
        for lease in await leases.all():
            if lease.instance_id == self.instance_id:
                self._check_twin(lease)
                continue
            if lease.alive(now):
                if lease.instance_id in self.following:  # it came back: its topic is its own
                    await self._unfollow(lease.instance_id)
            elif lease.adopted_by is None and await leases.claim(
                lease.instance_id, self.instance_id, now
            ):
                task = asyncio.create_task(
                    self._adopt_logged(lease.instance_id, lease.expires_at),
                    name=f"adopt:{lease.instance_id}",
                )
                self._adoptions.add(task)
                task.add_done_callback(self._adoptions.discard)

    async def _adopt_logged(self, dead: str, expired_at: float) -> None:
        try:
            await self.adopt(dead, expired_at)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("adopting instance %s failed: trying again", dead)
            if self.leases is not None:
                with contextlib.suppress(Exception):
                    await self.leases.unclaim(dead, self.instance_id)

    def _check_twin(self, lease: Lease) -> None:
        """Another process renewed this instance's lease since our own renewal: two processes
        run under one ``instance_id`` (each instance needs its own)."""
        if (
            not self._last_write  # not renewed yet: the row is an earlier life's
            or lease.owner == self.owner
            or lease.renewed_at < self._last_write
        ):
            return
        if time.monotonic() - self._warned_twin > 60:
            self._warned_twin = time.monotonic()
            log.error(
                "another process runs as instance %s: give every API instance its own "
                "instance_id (their MQTT sessions and replies collide)",
                self.instance_id,
            )

    async def check(self) -> tuple[bool, str]:
        """Readiness: the lease was renewed within ``lease_ttl`` (else a survivor may be
        adopting this instance's work)."""
        if self.renewed is None:
            return False, "lease not taken yet"
        age = time.monotonic() - self.renewed
        if age > self.settings.lease_ttl:
            return False, f"lease not renewed for {age:.1f} s"
        return True, f"lease renewed {age:.1f} s ago"

    async def adopt(self, dead: str, expired_at: float) -> None:
        log.warning("instance %s stopped renewing its lease: adopting its work", dead)
        topic_filter = reply_filter(dead)
        for _, link in self.links:
            with contextlib.suppress(aiomqtt.MqttError):  # subscribed again on reconnect
                await link.follow(topic_filter)
        self.following.add(dead)
        drained = await asyncio.gather(
            *(drain_session(mqtt, dead, link.on_reply) for mqtt, link in self.links),
            return_exceptions=True,
        )
        for (mqtt, _), outcome in zip(self.links, drained, strict=True):
            if isinstance(outcome, BaseException):
                log.warning(
                    "could not drain the session of %s on %s:%s: %s (its jobs are asked again)",
                    dead,
                    mqtt.host,
                    mqtt.port,
                    outcome,
                )
        jobs = await self.adopt_jobs(dead)
        if self.leases is not None:  # what the dead one was adopting itself is open again
            await self.leases.reopen_adoptions_of(dead, time.time())
        self.adopted[dead] = time.time() - expired_at
        log.warning(
            "adopted instance %s: %d jobs in flight taken over, %.1f s after its lease expired",
            dead,
            len(jobs),
            self.adopted[dead],
        )

    async def _unfollow(self, instance_id: str) -> None:
        self.following.discard(instance_id)
        for _, link in self.links:
            with contextlib.suppress(aiomqtt.MqttError):
                await link.unfollow(reply_filter(instance_id))
