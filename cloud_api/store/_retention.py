"""Queries whose cost must not grow with the number of finished jobs: the metrics' count of jobs
not yet final, and the retention purge that keeps the table from growing without end.

Both run the shared SQL through the store's own statement runners, on SQLite and PostgreSQL.

* :func:`count_unfinished` reads the ``jobs_state`` index over the unfinished states only:
  its cost follows the jobs in flight, never the history.
* :func:`purge_finished` deletes finished jobs (and their timelines) older than a cut-off in
  batches, walking the primary key from its oldest end: job ids are time-ordered (UUIDv7,
  milliseconds first), so the oldest jobs are found first and a batch costs its own size.
"""

from __future__ import annotations

from typing import Final

from ._base import FINAL_STATES, JobState, Store

_FINAL: Final = tuple(sorted(s.value for s in FINAL_STATES))
_UNFINISHED: Final = tuple(s.value for s in JobState if s not in FINAL_STATES)


def _marks(n: int) -> str:
    return ", ".join("?" for _ in range(n))


def id_floor(at: float) -> str:
    """The smallest job id :func:`protocol.new_job_id` can make at epoch time ``at``."""
    return f"{max(0, int(at * 1000)):012x}" + "0" * 20


async def count_unfinished(store: Store) -> dict[str, int]:
    """Jobs by state, for the states that are not final (index-only, cost ~ jobs in flight)."""
    rows = await store._fetch(
        f"SELECT state, COUNT(*) FROM jobs WHERE state IN ({_marks(len(_UNFINISHED))}) "
        "GROUP BY state",
        list(_UNFINISHED),
    )
    return {str(r[0]): int(r[1]) for r in rows}


async def purge_finished(store: Store, older_than: float, *, batch: int = 500) -> int:
    """Delete up to ``batch`` jobs that are final and were created and last changed before
    epoch time ``older_than``, with their timelines; returns how many jobs went."""
    rows = await store._fetch(
        f"SELECT id FROM jobs WHERE id < ? AND state IN ({_marks(len(_FINAL))}) "
        "AND updated_at < ? ORDER BY id LIMIT ?",
        [id_floor(older_than), *_FINAL, older_than, batch],
    )
    ids = [str(r[0]) for r in rows]
    if not ids:
        return 0
    marks = _marks(len(ids))
    # The state is checked again in the delete: a final job never changes, but the check costs
    # nothing and keeps the statement right on its own.
    await store._write(
        (f"DELETE FROM job_events WHERE job_id IN ({marks})", ids),
        [
            (
                f"DELETE FROM jobs WHERE id IN ({marks}) AND state IN ({_marks(len(_FINAL))})",
                [*ids, *_FINAL],
            )
        ],
    )
    return len(ids)
