"""An agent's clock offset (agent clock minus cloud clock), measured from live messages.

A message stamped ``at`` by the agent and received by the API at ``received`` gives the sample
``at - received = offset - delay``: every sample is a *lower bound* of the true offset, low by
the time the message took. The estimate is the highest sample of the last :data:`WINDOW`
seconds (the message that took least time), so

* its error is one-sided: deadlines written in the agent's clock with it are early by at most
  the quickest delivery of the window (milliseconds on a healthy link), never late;
* a message that sat in a queue (the API's persistent session while it restarted, a stalled
  broker) only gives a lower sample, which the maximum ignores;
* a retained message is old news (its age is unknown, it may be hours): it never counts as a
  measurement; nor does a message read at connect, before the API is ready: its persistent
  session then delivers what was queued while it was away, unretained but as old as the outage
  (the chaos run caught jobs refused ``EXPIRED`` 3 s early after an API restart that way).
  Replies to jobs are live messages too and count, once the session is ready. Until the first
  live message, the offset is 0 (clocks assumed in sync), or a retained sample when that is
  higher (the agent's clock is then ahead by at least that much).

An agent clock stepped forward is followed at the next live message; one stepped back by ``x``
is followed within :data:`WINDOW` s, and until then its deadlines are late by ``x`` (the broker's
Message Expiry, counted on the broker's clock, still bounds how late a request is delivered).
"""

from __future__ import annotations

import collections
import time
from typing import Final

#: Seconds of live samples the estimate is the maximum of (four status heartbeats by default).
WINDOW: Final = 120.0


class ClockOffset:
    __slots__ = ("_retained", "_samples")

    def __init__(self) -> None:
        #: (cloud time received, sample), oldest first
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        #: highest sample from retained messages (a lower bound of unknown quality)
        self._retained: float | None = None

    def observe(self, agent_at: float, received: float | None = None, *, live: bool) -> None:
        """Record a message the agent stamped ``agent_at`` (its clock), received at
        ``received`` (cloud clock, default now); ``live`` is False for a retained message."""
        if not agent_at:
            return
        received = time.time() if received is None else received
        sample = agent_at - received
        if not live:
            self._retained = sample if self._retained is None else max(self._retained, sample)
            return
        samples = self._samples
        samples.append((received, sample))
        while len(samples) > 1 and samples[0][0] < received - WINDOW:
            samples.popleft()

    @property
    def measured(self) -> bool:
        """Whether a live message has been heard."""
        return bool(self._samples)

    def value(self) -> float:
        """The offset to add to a cloud time to get the agent's time for the same moment."""
        if self._samples:
            return max(sample for _, sample in self._samples)
        return max(0.0, self._retained) if self._retained is not None else 0.0
