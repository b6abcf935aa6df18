"""A fake ESC/POS printer behind a pseudo-terminal, for the serial and device-node backends.

The backend opens the pty's slave side (a real character device, like ``/dev/ttyUSB0`` or
``/dev/usb/lp0``); a thread on the master side answers ``DLE EOT`` from a
:class:`ops.fake_printer.PrinterState` and keeps everything else as job data. POSIX only.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from types import TracebackType

from ops.fake_printer import PrinterState


class PtyPrinter:
    def __init__(self, state: PrinterState | None = None) -> None:
        self.state = state or PrinterState()
        self.silent = False  # True: read everything, answer nothing (a printer without DLE EOT)
        self.data = bytearray()
        self.queries: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation: bytes pass unchanged
        self.path = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._run, name="pty-printer", daemon=True)

    def __enter__(self) -> PtyPrinter:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self.master)
        os.close(self._slave)  # held open so the pty survives the backend closing it

    def _run(self) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                pending += os.read(self.master, 65536)
            except OSError:
                continue
            i = 0
            while i < len(pending):
                if pending[i] == 0x10:
                    if len(pending) - i < 3:
                        break
                    if pending[i + 1] == 0x04 and 1 <= pending[i + 2] <= 4:
                        with self._lock:
                            self.queries.append(pending[i + 2])
                        if not self.silent:
                            os.write(self.master, self.state.answer(pending[i + 2]))
                        i += 3
                        continue
                with self._lock:
                    self.data.append(pending[i])
                i += 1
            pending = pending[i:]
