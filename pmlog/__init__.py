"""The log format the API and the agent both write (JSON lines for services, text on a
terminal, the trace id on every line): not part of the wire contract, so not in ``protocol``;
neutral, so both sides may import it (they never import each other)."""

from ._format import JsonFormatter, LogFormat, TextFormatter, configure_logging, log_event

__all__ = ["JsonFormatter", "LogFormat", "TextFormatter", "configure_logging", "log_event"]
