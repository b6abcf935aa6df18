"""Histogram buckets both sides' metrics use, so the API's and the agents' latency histograms
line up on one dashboard."""

from __future__ import annotations

from typing import Final

#: Seconds: a loopback round trip is ~1 ms, a print a few ms, a slow agent seconds.
LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
