"""The SQL text of the store's writes, built once per shape: a job's insert and the conditional
update of a transition; and :class:`Step`, one transition as the store applies it."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

from ._records import _COLUMNS, _FIELDS, JobState

INSERT_JOB: Final = f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' for _ in _FIELDS)})"


@functools.lru_cache(maxsize=256)
def update_sql(
    sources: int,
    fields: tuple[str, ...],
    in_branch: bool,
    sent: bool = False,
    from_agent: bool = False,
) -> str:
    """The conditional update of a transition: ``sources`` states allowed, ``fields`` set; with
    ``sent``, a ``queued`` job moves only if it was sent once (a reply to a job never sent is
    refused); with ``from_agent``, only a job sent to that agent moves."""
    sets = ", ".join(["state = ?", "updated_at = ?", *(f"{k} = ?" for k in fields)])
    where = "id = ? AND branch_id = ?" if in_branch else "id = ?"
    if from_agent:  # a reply: from the job's agent, and only for a job that was sent
        where += " AND agent_id = ? AND sent_by IS NOT NULL"
    marks = ", ".join("?" for _ in range(sources))
    if sent:
        where += " AND (state <> 'queued' OR sent_by IS NOT NULL)"
    return f"UPDATE jobs SET {sets} WHERE {where} AND state IN ({marks}) RETURNING {_COLUMNS}"


#: One SQL statement (``?`` placeholders) and its arguments.
Statement = tuple[str, Sequence[Any]]


class Step(NamedTuple):
    """One conditional transition (:meth:`Store.advance_many`)."""

    to: JobState
    allowed_from: frozenset[JobState]
    cause: str
    #: only a job of this branch changes
    in_branch: str | None = None
    #: columns set with the state
    fields: Mapping[str, Any] = {}
    #: only a job that was sent once changes (a reply: never to a job that was never sent)
    sent_only: bool = False
    #: only a job sent to this agent changes (a reply counts only from the job's own agent,
    #: and never for a job that was not sent)
    from_agent: str | None = None
