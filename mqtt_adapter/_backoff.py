"""Capped exponential backoff with full jitter, for every reconnect and restart loop."""

from __future__ import annotations

import random


class Backoff:
    """Delays ``uniform(0, min(cap, base * 2**attempt))``: spreads a fleet's reconnects after a
    broker restart instead of letting hundreds of agents knock at the same instant."""

    def __init__(
        self, base: float = 0.2, cap: float = 10.0, rng: random.Random | None = None
    ) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 30)
        return self._rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0
