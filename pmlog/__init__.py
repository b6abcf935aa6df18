"""The log format the API and the agent both write (JSON lines for services, text on a
terminal, the trace id on every line), and the latency buckets of both sides' histograms: not
part of the wire contract, so not in ``protocol``; neutral, so both sides may import it (they
never import each other)."""

from ._buckets import LATENCY_BUCKETS
from ._format import JsonFormatter, LogFormat, TextFormatter, configure_logging, log_event

__all__ = [
    "LATENCY_BUCKETS",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "configure_logging",
    "log_event",
]
