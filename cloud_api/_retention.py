"""Retention: finished jobs older than ``job_retention_s`` are deleted, in batches, by a
background task of each API instance — never on a request's path.

Each round deletes batches of ``retention_batch`` jobs (oldest first, see
:func:`cloud_api.store._retention.purge_finished`) until none is left, pausing between batches
so the store serves requests in between, then sleeps ``retention_interval`` seconds. Several
instances purging at once only repeat each other's deletes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ._metrics import Metrics
from ._settings import ApiSettings
from .store import Store
from .store._retention import purge_finished

log = logging.getLogger("cloud_api.retention")

#: Seconds between two batches of one round: the store's other work goes first.
BATCH_PAUSE_S = 0.05


async def purge_once(store: Store, settings: ApiSettings, metrics: Metrics | None = None) -> int:
    """One round: every finished job older than the retention, batch by batch."""
    cutoff = time.time() - settings.job_retention_s
    total = 0
    while True:
        removed = await purge_finished(store, cutoff, batch=settings.retention_batch)
        total += removed
        if metrics is not None and removed:
            metrics.purged.inc(removed)
        if removed < settings.retention_batch:
            break
        await asyncio.sleep(BATCH_PAUSE_S)
    if total:
        log.info(
            "purged %d finished jobs older than %.0f s",
            total,
            settings.job_retention_s,
            extra={"purged": total},
        )
    return total


async def run_retention(store: Store, settings: ApiSettings, metrics: Metrics) -> None:
    """Purge rounds until cancelled (nothing when ``job_retention_s`` is 0)."""
    if settings.job_retention_s <= 0:
        return
    while True:
        try:
            await purge_once(store, settings, metrics)
        except Exception:
            log.exception("purging finished jobs failed; trying again next round")
        await asyncio.sleep(settings.retention_interval)
