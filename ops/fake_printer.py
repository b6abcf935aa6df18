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

    python -m ops.fake_printer --port 9100 [--paper out] [--cover-open] [--save-dir DIR]
        [--behaviour NAME] [--stall-after S --stall-for S] [--paper-out-after S --paper-out-for S]
        [--control FILE]   # JSON, applied whenever it changes: {"stall_for": 6}, {"paper": "out"}
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

if not __package__:  # run as a script (python ops/fake_printer.py): the repository's modules
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ops._fake_printer_wire import (
    BEHAVIOURS,
    DLE_EOT,
    Behaviour,
    Connection,
    Paper,
    PrinterState,
    reset,
)

__all__ = [
    "BEHAVIOURS",
    "DLE_EOT",
    "Behaviour",
    "Connection",
    "FakePrinter",
    "Paper",
    "PrinterState",
]


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
                reset(sock)
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
                reset(sock)
                return None
            end = pending.find(b"\x10", i + 1)
            end = len(pending) if end < 0 else end
            if self.behaviour == "vanish_mid_job":
                keep = max(0, self.vanish_after - len(conn.data))
                with self._lock:
                    conn.add_data(pending[i : min(end, i + keep)])
                if end - i >= keep:
                    reset(sock)
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


if __name__ == "__main__":
    from ops._fake_printer_cli import main

    sys.exit(main())
