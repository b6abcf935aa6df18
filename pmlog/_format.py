"""The log format of the API and the agent, configured in one place: :func:`configure_logging`.

One event per line. Services (stderr not a terminal: systemd, containers, files) write JSON
lines; a terminal gets the same events as readable text::

    {"ts":"2026-12-03T06:40:01.123Z","level":"info","logger":"cloud_api.jobs","msg":"job accepted",
     "job_id":"…","branch_id":"demo","agent_id":"agent-1","state":"accepted","trace_id":"…"}
    06:40:01.123 INFO  cloud_api.jobs: job accepted job_id=… branch_id=demo … trace_id=…

Fields beyond ``ts level logger msg`` are the ``extra={...}`` of the log call; ``trace_id`` is
added from the current trace context (:mod:`protocol._trace`) when the call names none, so every
line written while serving a request or a reply carries it.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import logging
import sys
import time
from typing import Any, Final, Literal, TextIO

import msgspec

from protocol import current_trace_id

LogFormat = Literal["auto", "json", "text"]

#: Attributes every LogRecord has: anything else on a record came from ``extra``.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
    | {"message", "asctime", "taskName", "color_message"}  # uvicorn's colour copy of msg
)
#: A record's own attributes come first in its ``__dict__``; ``extra`` is added after them.
_OWN: Final = len(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
_encoder = msgspec.json.Encoder(enc_hook=str)


class _Clock:
    """``time.gmtime`` formatting cached per second (most lines share their second)."""

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._second = -1
        self._text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._text = time.strftime(self._pattern, time.gmtime(second))
        return self._text


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    extra = itertools.islice(record.__dict__.items(), _OWN, None)
    return {k: v for k, v in extra if k not in _STANDARD}


def _with_trace(fields: dict[str, Any]) -> dict[str, Any]:
    if fields.get("trace_id") is None:
        trace_id = current_trace_id()
        if trace_id is not None:
            fields["trace_id"] = trace_id
        else:
            fields.pop("trace_id", None)
    return fields


class _EventFormatter(logging.Formatter, abc.ABC):
    """A formatter whose lines can also be made without a LogRecord (:func:`log_event`)."""

    @abc.abstractmethod
    def line(self, created: float, level: str, name: str, msg: str, fields: dict[str, Any]) -> str:
        """One formatted line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _with_trace(_extras(record))
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exc"] = record.exc_text
        return self.line(record.created, record.levelname, record.name, record.getMessage(), fields)


class JsonFormatter(_EventFormatter):
    """One JSON object per line: ``ts`` (UTC, ms), ``level``, ``logger``, ``msg``, then the
    event's fields; ``exc`` holds a traceback."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock("%Y-%m-%dT%H:%M:%S")

    def line(self, created: float, level: str, name: str, msg: str, fields: dict[str, Any]) -> str:
        out: dict[str, Any] = {
            "ts": f"{self._clock(created)}.{int((created % 1) * 1000):03d}Z",
            "level": level.lower(),
            "logger": name,
            "msg": msg,
        }
        out.update(fields)
        return _encoder.encode(out).decode()


class TextFormatter(_EventFormatter):
    """``HH:MM:SS.mmm LEVEL logger: message key=value …`` for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock("%H:%M:%S")

    def line(self, created: float, level: str, name: str, msg: str, fields: dict[str, Any]) -> str:
        exc = fields.pop("exc", None)
        text = f"{self._clock(created)}.{int((created % 1) * 1000):03d} {level:<5} {name}: {msg}"
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if exc:
            text += "\n" + exc
        return text


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes formatted lines to a stream; on an event loop, the lines of one loop iteration
    go out together in one write, at the end of the iteration (a service logs several events
    per request: one system call for all of them). Elsewhere (threads, no loop), each line is
    written at once. :meth:`flush` (called at exit) writes whatever is pending."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.put(self.format(record))
        except Exception:
            self.handleError(record)

    def put(self, line: str) -> None:
        """Write ``line`` (at the end of this loop iteration when on an event loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write([line + "\n"])
            return
        with self.lock:  # type: ignore[union-attr]
            if not self._pending:
                loop.call_soon(self.flush)
            self._pending.append(line + "\n")

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._pending = self._pending, []
        if lines:
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        stream = self.stream
        try:
            stream.write("".join(lines))
            stream.flush()
        except (OSError, ValueError):  # stream gone (closed at exit): nothing to do
            pass


def configure_logging(
    level: str | int = "INFO", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) in ``fmt``: ``auto`` is text on a
    terminal, JSON lines otherwise. Replaces the root logger's handlers; returns the new one."""
    stream = stream if stream is not None else sys.stderr
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        fmt = "text" if isatty is not None and isatty() else "json"
    # Records carry no caller, thread or process details: nothing here writes them, and finding
    # the caller walks the stack on every call (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LineHandler(stream)
    formatter = TextFormatter() if fmt == "text" else JsonFormatter()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    global _installed
    _installed = (handler, formatter)
    return handler


_installed: tuple[LineHandler, _EventFormatter] | None = None


def log_event(logger: logging.Logger, level: int, msg: str, fields: dict[str, Any]) -> None:
    """``logger.log(level, msg, extra=fields)``, the same line, for the events services write
    several times per request (access log, job transitions): while the handler
    :func:`configure_logging` installed is the only one that would see the record (no other
    handler, no filter on the way), the line is made without a LogRecord, at about half the
    cost. Otherwise (a test's log capture, a handler added later) it is an ordinary log call."""
    if not logger.isEnabledFor(level):
        return
    installed = _installed
    if installed is not None and _only_to(logger, installed[0]):
        handler, formatter = installed
        if level >= handler.level:
            name = logging.getLevelName(level)
            handler.put(formatter.line(time.time(), name, logger.name, msg, _with_trace(fields)))
        return
    logger.log(level, msg, extra=fields)


def _only_to(logger: logging.Logger, handler: logging.Handler) -> bool:
    """True when a record of ``logger`` would reach ``handler`` alone, unfiltered."""
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return False
        if current.handlers:
            return current.handlers == [handler] and current.parent is None and not handler.filters
        if not current.propagate:
            return False
        current = current.parent
    return False
