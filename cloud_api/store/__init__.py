"""The job store: jobs, their timelines and idempotency keys.

SQLite by default (zero set-up, one API instance); PostgreSQL via a ``postgresql://`` URL when
several API instances share the work. Both run the same SQL and pass the same tests.
"""

from ._base import (
    FINAL_STATES,
    IdempotencyConflict,
    JobEvent,
    JobRecord,
    JobState,
    Step,
    Store,
    StoreError,
)
from ._open import open_store

__all__ = [
    "FINAL_STATES",
    "IdempotencyConflict",
    "JobEvent",
    "JobRecord",
    "JobState",
    "Step",
    "Store",
    "StoreError",
    "open_store",
]
