"""Group commit for SQLite: one writer thread serves one or more databases.

Both the cloud API's job store and the branch agent's job ledger keep their SQLite work off the
event loop on one thread that commits in groups. The semantics they rely on:

* **Submission order is commit order.** Calls to one database run in the order they were made,
  so every call sees the writes submitted before it: one transaction per call, run one after
  the other, as far as anyone can tell.
* **A failing write is rolled back alone.** Each write runs in its own savepoint inside the
  batch's transaction; its exception goes to its caller, the others commit.
* **Callers resume only after the commit that holds their write** (with the database's
  ``synchronous`` setting deciding what a commit survives).
* **A commit listener** (``on_commit``) hears what the writes of a commit produced, on the event
  loop, before any future of that commit resolves.

The cost model: calls made in one turn of an event loop reach the thread in one wake-up; the
thread takes whatever is queued when it wakes, runs one transaction per database in the batch
and hops back to each loop once. Many databases (many simulated agents in one process) can share
one thread, so a process never holds more writer threads than it needs.

Standard library only, and no import from the rest of the project: the branch agent (Linux and
Windows) and the cloud API both use it.
"""

from ._writer import Database, Writer, WriterClosed

__all__ = ["Database", "Writer", "WriterClosed"]
