"""A fake ESC/POS network printer (raw TCP, like port 9100) for tests and demos.

It listens on 127.0.0.1 only, keeps every byte it receives, and answers ``DLE EOT n`` real-time
status requests from a state you set, like a real printer does: the request is taken out of the
stream wherever it appears, so ``jobs`` holds exactly the bytes meant for paper.

    with FakePrinter() as printer:              # port 0: the OS picks a free port
        printer.state.paper = "out"             # answer DLE EOT as a printer out of paper
        printer.behaviour = "stall"             # accept connections, never read or answer
                                                # also: stall_on_data, drop, drop_on_data
        printer.behaviour = "pause"             # read nothing on any connection, open or new,
                                                # until the behaviour changes back (a printer
                                                # that hangs, then recovers)
        ...
        printer.jobs                            # one bytes object per connection that sent data

Behaviours (``printer.behaviour``, or ``--behaviour`` from a shell):

* ``normal``: read everything, answer every ``DLE EOT``.
* ``stall``: accept connections, never read or answer (a hung printer).
* ``stall_on_data``: answer status, stop reading at the first job byte (a paper jam mid-job).
* ``drop``: reset every connection at once; ``drop_on_data``: reset at the first job byte.
* ``jam_after_data``: read every job byte, then never answer ``DLE EOT`` again on that
  connection (the job reached the printer, which then jams: the ticket may be on paper).
* ``vanish_mid_job``: keep ``vanish_after`` job bytes (default 1), then reset the connection
  (a printer switched off mid-ticket).

Timed faults, for chaos runs (each returns at once; the printer recovers by itself):

* ``printer.stall_for(6)``: for 6 s read nothing and answer nothing on any connection, old or
  new, then serve normally again (the bytes sent meanwhile wait in the socket buffers).
* ``printer.paper_out_for(5)``: answer "paper out" for 5 s, then "paper ok".

``printer.connections`` lists every accepted connection (``printer.accepted`` counts them,
``printer.open_connections`` counts those still open), so a test can see how a client uses
them.

From a shell::

    python ops/fake_printer.py --port 9100 [--paper out] [--cover-open] [--save-dir DIR]
        [--behaviour NAME] [--stall-after S --stall-for S] [--paper-out-after S --paper-out-for S]
        [--control FILE]   # JSON, applied whenever it changes: {"stall_for": 6}, {"paper": "out"}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

log = logging.getLogger("fake_printer")

DLE_EOT = b"\x10\x04"
Behaviour = Literal[
    "normal",
    "stall",
    "stall_on_data",
    "drop",
    "drop_on_data",
    "jam_after_data",
    "vanish_mid_job",
    "pause",
]
BEHAVIOURS: tuple[Behaviour, ...] = (
    "normal",
    "stall",
    "stall_on_data",
    "drop",
    "drop_on_data",
    "jam_after_data",
    "vanish_mid_job",
    "pause",
)
Paper = Literal["ok", "near_end", "out"]


@dataclass
class PrinterState:
    """What the fake printer says about itself when asked with ``DLE EOT n``."""

    online: bool = True
    paper: Paper = "ok"
    cover_open: bool = False
    #: Bits of ``DLE EOT 3`` (0x08 autocutter, 0x20 unrecoverable, 0x40 auto-recoverable).
    error_bits: int = 0

    def answer(self, n: int) -> bytes:
        """The one-byte answer to ``DLE EOT n`` (None-like empty bytes for an unknown ``n``)."""
        base = 0x12
        paper_out = self.paper == "out"
        if n == 1:
            offline = not self.online or self.cover_open or paper_out or bool(self.error_bits)
            return bytes([base | (0x08 if offline else 0)])
        if n == 2:
            value = base
            value |= 0x04 if self.cover_open else 0
            value |= 0x20 if paper_out else 0
            value |= 0x40 if self.error_bits else 0
            return bytes([value])
        if n == 3:
            return bytes([base | (self.error_bits & 0x6C)])
        if n == 4:
            value = base
            value |= 0x0C if self.paper in ("near_end", "out") else 0
            value |= 0x60 if paper_out else 0
            return bytes([value])
        return b""


@dataclass
class Connection:
    """What one client connection sent.

    A connection may carry several jobs (a client that keeps it alive): job data that follows a
    status request starts a new job, and a job ends at the next status request or when the
    connection closes.
    """

    peer: tuple[str, int]
    raw: bytearray = field(default_factory=bytearray)
    data: bytearray = field(default_factory=bytearray)
    queries: list[int] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    #: ``jam_after_data``: the job arrived and the printer jammed; no answer any more.
    jammed: bool = False
    #: Jobs that ended (followed by a status request or the close), and the one arriving.
    finished: list[bytes] = field(default_factory=list)
    current: bytearray = field(default_factory=bytearray)
    #: wall-clock time the first byte of job data arrived (when paper started), if any
    data_at: float | None = None
    #: (offset in ``data``, wall-clock time) where each job began to arrive: on a kept-alive
    #: connection that carries many jobs, when each of them reached the paper
    arrivals: list[tuple[int, float]] = field(default_factory=list)

    def add_data(self, chunk: bytes) -> None:
        now = time.time()
        if self.data_at is None:
            self.data_at = now
        if not self.current:  # the first bytes of a job
            self.arrivals.append((len(self.data), now))
        self.data += chunk
        self.current += chunk

    def arrived_at(self, offset: int) -> float | None:
        """When the job that holds the byte at ``offset`` of ``data`` began to arrive (a job
        that stalls mid-way started on paper at its first byte, not when the rest came)."""
        at = None
        for start, when in self.arrivals:
            if start > offset:
                break
            at = when
        return at

    def end_job(self) -> None:
        if self.current:
            self.finished.append(bytes(self.current))
            self.current = bytearray()


class FakePrinter:
    """A thread-based fake printer; use it as a context manager (or call start/stop)."""

    def __init__(self, port: int = 0, state: PrinterState | None = None) -> None:
        self.state = state or PrinterState()
        self.behaviour: Behaviour = "normal"
        #: ``vanish_mid_job``: job bytes kept before the connection is reset.
        self.vanish_after = 1
        self.connections: list[Connection] = []
        #: Monotonic time until which nothing is read or answered (see :meth:`stall_for`).
        self._stalled_until = 0.0
        self._requested_port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._stopping = threading.Event()
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakePrinter:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._requested_port))
        listener.listen(16)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop, "fake-printer-accept")
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> FakePrinter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    # --- timed faults --------------------------------------------------------------------------

    def stall_for(self, seconds: float) -> None:
        """Read and answer nothing for ``seconds`` (every connection), then recover."""
        with self._changed:
            self._stalled_until = time.monotonic() + seconds
            self._changed.notify_all()

    @property
    def stalled(self) -> bool:
        return time.monotonic() < self._stalled_until

    def paper_out_for(self, seconds: float) -> None:
        """Answer "paper out" for ``seconds``, then "paper ok" again."""
        self.state.paper = "out"
        timer = threading.Timer(seconds, self._paper_back)
        timer.daemon = True
        timer.start()

    def _paper_back(self) -> None:
        self.state.paper = "ok"

    def _wait_out_stall(self) -> None:
        while not self._stopping.is_set():
            remaining = self._stalled_until - time.monotonic()
            if remaining <= 0:
                return
            self._stopping.wait(min(remaining, 0.05))

    # --- what arrived ------------------------------------------------------------------------

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self.connections)

    @property
    def open_connections(self) -> int:
        """Connections accepted and not closed yet (by either side)."""
        with self._lock:
            return sum(not c.closed.is_set() for c in self.connections)

    @property
    def jobs(self) -> list[bytes]:
        """Job data (status requests removed), in order: on each connection, job bytes between
        status requests are one job (a connection per job is one job per connection)."""
        with self._lock:
            return [
                job
                for c in self.connections
                for job in [*c.finished, *([bytes(c.current)] if c.current else [])]
            ]

    @property
    def finished_jobs(self) -> list[bytes]:
        """Jobs known to be complete: followed by a status request, or their connection closed."""
        with self._lock:
            return [job for c in self.connections for job in c.finished]

    @property
    def queries(self) -> list[int]:
        """Every ``n`` of every ``DLE EOT n`` received, in order."""
        with self._lock:
            return [n for c in self.connections for n in c.queries]

    def wait_for_jobs(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """Block until ``count`` jobs are complete (followed by a status request or their
        connection closed); return all complete jobs."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                done = [job for c in self.connections for job in c.finished]
                if len(done) >= count:
                    return done
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(done)} of {count} jobs arrived within {timeout}s")
                self._changed.wait(remaining)

    # --- serving -----------------------------------------------------------------------------

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn = Connection(peer=peer)
            with self._changed:
                self._sockets.append(sock)
                self.connections.append(conn)
                self._changed.notify_all()
            behaviour = self.behaviour
            if behaviour == "drop":
                _reset(sock)
                self._closed(conn)
                continue
            if behaviour == "stall":
                continue  # hold the socket open, never read: the kernel buffers fill, then block
            self._spawn(self._serve, f"fake-printer-{peer[1]}", sock, conn)

    def _serve(self, sock: socket.socket, conn: Connection) -> None:
        sock.settimeout(0.1)
        pending = b""
        try:
            while not self._stopping.is_set():
                self._wait_out_stall()
                if self.behaviour == "pause":  # hung: read nothing, answer nothing, keep it
                    self._stopping.wait(0.02)
                    continue
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    if pending:  # a trailing partial DLE sequence is plain data after all
                        with self._lock:
                            conn.add_data(pending)
                    break
                with self._lock:
                    conn.raw += chunk
                pending += chunk
                tail = self._consume(sock, conn, pending)
                if tail is None:
                    return
                pending = tail
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            self._closed(conn)

    def _consume(self, sock: socket.socket, conn: Connection, pending: bytes) -> bytes | None:
        """Handle ``pending`` in order, as a printer does; return the undecided tail.

        Status requests are answered and left out of the job data; None means the connection
        was dropped or stalled and must not be read again.
        """
        i = 0
        while i < len(pending):
            if pending[i] == 0x10:
                if len(pending) - i < 3:
                    break  # maybe a request split across reads: wait for more
                if pending[i + 1] == 0x04 and 1 <= pending[i + 2] <= 4:
                    n = pending[i + 2]
                    with self._changed:
                        conn.queries.append(n)
                        conn.end_job()
                        self._changed.notify_all()
                        answer = self.state.answer(n)
                        if self.behaviour == "jam_after_data" and conn.data:
                            conn.jammed = True
                    if not conn.jammed:
                        self._wait_out_stall()
                        sock.sendall(answer)
                    i += 3
                    continue
            if self.behaviour == "drop_on_data":
                _reset(sock)
                return None
            end = pending.find(b"\x10", i + 1)
            end = len(pending) if end < 0 else end
            if self.behaviour == "vanish_mid_job":
                keep = max(0, self.vanish_after - len(conn.data))
                with self._lock:
                    conn.add_data(pending[i : min(end, i + keep)])
                if end - i >= keep:
                    _reset(sock)
                    return None
                i = end
                continue
            with self._lock:
                conn.add_data(pending[i:end])
            if self.behaviour == "stall_on_data":
                self._stopping.wait()  # like a paper jam: stop reading, keep the connection
                return None
            i = end
        return pending[i:]

    def _closed(self, conn: Connection) -> None:
        with self._changed:
            conn.end_job()
            conn.closed.set()
            self._changed.notify_all()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the client sees 'connection reset', as when a printer dies."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class _Control:
    """``--control FILE``: apply the file's settings each time it changes (from a chaos tool)."""

    def __init__(self, printer: FakePrinter, path: Path) -> None:
        self.printer = printer
        self.path = path
        self.seen: int | None = None

    def check(self) -> None:
        try:
            stamp = self.path.stat().st_mtime_ns
            if stamp == self.seen:
                return
            self.seen = stamp
            settings = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("control file %s: %s", self.path, exc)
            return
        printer = self.printer
        for key in ("paper", "cover_open", "online", "error_bits"):
            if key in settings:
                setattr(printer.state, key, settings[key])
        if settings.get("behaviour") in BEHAVIOURS:
            printer.behaviour = settings["behaviour"]
        if "vanish_after" in settings:
            printer.vanish_after = int(settings["vanish_after"])
        if settings.get("stall_for"):
            printer.stall_for(float(settings["stall_for"]))
        if settings.get("paper_out_for"):
            printer.paper_out_for(float(settings["paper_out_for"]))
        log.info("control: %s", settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=9100, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--paper", choices=["ok", "near_end", "out"], default="ok")
    parser.add_argument("--cover-open", action="store_true")
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--behaviour", choices=BEHAVIOURS, default="normal")
    parser.add_argument("--vanish-after", type=int, default=1, help="vanish_mid_job: bytes kept")
    parser.add_argument("--stall-after", type=float, default=0.0, help="seconds before a stall")
    parser.add_argument("--stall-for", type=float, default=0.0, help="stall this long, recover")
    parser.add_argument("--paper-out-after", type=float, default=0.0)
    parser.add_argument("--paper-out-for", type=float, default=0.0, help="paper out this long")
    parser.add_argument("--save-dir", type=Path, help="write each job to DIR/job-N.prn")
    parser.add_argument(
        "--control",
        type=Path,
        help="a JSON file read whenever it changes: behaviour, paper, cover_open, online, "
        "error_bits, vanish_after, stall_for, paper_out_for (faults at any moment)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # SIGTERM (kill, systemd, a test harness) ends it like Ctrl-C does
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    state = PrinterState(online=not args.offline, paper=args.paper, cover_open=args.cover_open)
    printer = FakePrinter(args.port, state)
    printer.behaviour = args.behaviour
    printer.vanish_after = args.vanish_after
    with printer:
        for after, length, fault in (
            (args.stall_after, args.stall_for, printer.stall_for),
            (args.paper_out_after, args.paper_out_for, printer.paper_out_for),
        ):
            if length > 0:
                timer = threading.Timer(after, fault, (length,))
                timer.daemon = True
                timer.start()
        print(f"fake printer listening on 127.0.0.1:{printer.port}", flush=True)
        seen = 0
        control = _Control(printer, args.control) if args.control else None
        try:
            while True:
                if control is not None:
                    control.check()
                jobs = printer.finished_jobs
                for job in jobs[seen:]:
                    seen += 1
                    log.info("job %d: %d bytes", seen, len(job))
                    if args.save_dir:
                        args.save_dir.mkdir(parents=True, exist_ok=True)
                        (args.save_dir / f"job-{seen}.prn").write_bytes(job)
                time.sleep(0.2)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
