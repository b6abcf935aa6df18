"""What a chaos run is made of (:mod:`ops.chaos`): its settings and the printers it drives."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from cloud_api import ApiSettings, MqttClientSettings

__all__ = ["DEFAULTS", "NETWORK_PRINTER", "NO_API_FOR", "PRINTER", "ChaosConfig"]

PRINTER = "POS-80C"
#: The network printer of the stalled-printer agent.
NETWORK_PRINTER = "KITCHEN"
#: Seconds a submission or a test print keeps trying while no API answers (or only with 5xx;
#: each outage lasts ``down_for``): then it counts as rejected / never answered, not a hang.
NO_API_FOR = 60.0

#: The API runs with its production lifecycle settings (resend after 10 s, a sent job expires
#: 5 s past its deadline, an accepted job with no result is outcome_unknown 10 min past it):
#: nothing is tuned for the run.
DEFAULTS = ApiSettings(api_token="-", mqtt=MqttClientSettings(username="-", password="-"))


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int = 500
    #: Submissions per second (steady: the i-th job is submitted at i / rate s).
    rate: float = 50.0
    #: Agents with a virtual printer (they are the ones killed).
    agents: int = 2
    #: Seconds the virtual printer takes per job, so jobs are mid-print when something dies.
    print_delay: float = 0.02
    #: Most jobs' deadline (s): longer than any outage of the run (about 1-3 s each).
    expire_after: float = 30.0
    #: One job in ``short_every`` (drawn per job, the same in every run) has a short deadline
    #: instead: 5, 6, ... 10 s.
    short_every: int = 3
    #: Seconds a killed process stays down.
    down_for: float = 1.0
    #: One more agent whose network printer (a fake ESC/POS printer) hangs: it reads nothing,
    #: on open connections or new ones, for ``stall_for`` seconds, then recovers.
    stalled_printer: bool = True
    stall_for: float = 6.0
    #: How it hangs: ``stall`` (connections opened during the hang are never read, ever: the
    #: agent's status poll or write on one waits for its own timeout; connections opened after
    #: the hang are served), or ``pause`` (nothing is read on any connection, open or new,
    #: until it recovers; then everything is).
    stall_mode: str = "stall"
    #: An agent's process is paused (SIGSTOP) this long at the start: its socket stays open,
    #: requests reach it and wait; test prints to it are answered 504 (0: no pause).
    pause_for: float = 4.0
    #: Test prints by a client that retries what the answer says is retryable (same
    #: Idempotency-Key, at most 3 retries), spread over the run.
    test_prints: int = 50
    state_dir: Path | None = None
    #: API instances (processes). With 2 or more, the killed API is never restarted: a survivor
    #: adopts its jobs (its lease expires), and submissions and reads go to the live ones.
    apis: int = 1
    #: ``sqlite`` or ``postgresql`` (a database created for the run on ``PM_CHAOS_POSTGRES``).
    store: str = "sqlite"
    #: Brokers. With 2 or more, agents fail over to the next when the first is killed, and
    #: return to it once it is back.
    brokers: int = 1

    def deadline(self, i: int) -> float:
        if self.short_every and random.Random(i).random() < 1 / self.short_every:
            return 5.0 + i % 6
        return self.expire_after
