"""The job lifecycle::

    queued ──▶ sent ──▶ accepted ──▶ waiting_printer ──▶ printing ──▶ printed
      │          │          │              │                 │
      │          │          └──────────────┴─────────────────┴──▶ failed | outcome_unknown
      ├──────────┴──▶ expired            (a deadline passed before the job started)
      └──────────┬──▶ cancelled          (DELETE before the agent started printing)

A job is stored before the caller hears of it, and every transition is a conditional update
with its time and cause. Jobs for an offline agent wait ``queued`` and are sent when it comes
back, unless their deadline passed (``expired``). Replies may arrive in any API instance's
session and long after the request; they are applied from the store, not from memory. A reply
may skip stages (``sent`` straight to ``printed``): every transition names all the states it
may come from.

:class:`JobService` is a thin façade: it holds what the parts share (:class:`Core`) and hands
each operation to the part that does it, one responsibility each:

=====================  =====================================================================
``_submit.py``         the branch check and agent lookup (once), storing a job
``_dispatch.py``       building and publishing requests, ``queued -> sent``
``_replies.py``        decoding replies (once) and applying them in order
``_transitions.py``    one conditional update and its bookkeeping
``_sweeper.py``        deadlines, resends, recovery, adoption of a dead instance's jobs
``_reads.py``          reads, live events (SSE), waiting for a stage
``_testprint.py``      a test page answered with its result
``_cancel.py``         cancel in the store or at the agent
``_inflight.py``       the one registry of in-flight work (waiters, RPCs, inboxes, resends)
=====================  =====================================================================
"""

from __future__ import annotations

from .._mqtt import MqttLink
from .._registry import Registry
from .._settings import ApiSettings
from ..store import Store
from ._cancel import Cancels
from ._core import Core
from ._dispatch import Dispatch
from ._reads import Reads
from ._replies import Replies
from ._submit import Submission
from ._sweeper import Sweeper
from ._testprint import TestPrints
from ._transitions import Transitions


class JobService(Core):
    """The job lifecycle: :attr:`settings`, :attr:`store`, :attr:`flights` (the in-flight
    registry, whose ``listeners`` hear of every change), :attr:`observer` and :attr:`admit`
    (set by the app), and the operations of the parts."""

    def __init__(
        self, settings: ApiSettings, store: Store, link: MqttLink, registry: Registry
    ) -> None:
        super().__init__(settings, store, link, registry)
        transitions = Transitions(self)
        dispatch = Dispatch(self, transitions)
        submission = Submission(self, dispatch)
        reads = Reads(self)
        cancels = Cancels(self, transitions, dispatch, reads)
        sweeper = Sweeper(self, transitions, dispatch)
        tests = TestPrints(self, submission, reads, cancels, transitions)
        registry.on_online.append(dispatch.agent_came_online)
        self.submit = submission.submit
        self.test_print = tests.test_print
        self.get = reads.get
        self.timeline = reads.timeline
        self.events = reads.events
        self.wait = reads.wait
        self.cancel = cancels.cancel
        #: the MQTT session's reply handler
        self.on_reply = Replies(self, transitions).on_reply
        self.run = sweeper.run
        self.sweep = sweeper.sweep
        self.adopt = sweeper.adopt
