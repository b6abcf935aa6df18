"""Printers behind a device node (``/dev/usb/lp0``, ``LPT1``) via python-escpos ``File``.

python-escpos opens the node write-only. Where the node is a character device on a POSIX system
it is opened read-write instead, and ``DLE EOT`` answers are read with ``select`` so a silent
printer costs ``timeout``, not a hang. Anywhere else (a regular file, Windows) the status is
unknown and jobs are sent without a check. A node that does not exist is an offline printer;
it is never created.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Any, ClassVar

from ._escpos_device import EscposDeviceBackend, NoStatusChannel


def _is_readable_node(path: str) -> bool:
    if sys.platform == "win32":
        return False
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


class FilePrinter(EscposDeviceBackend):
    kind: ClassVar[str] = "file"

    def __init__(
        self, name: str, device: str, timeout: float = 5.0, status_query: bool = True
    ) -> None:
        super().__init__(name, timeout, status_query)
        self.device = device

    @property
    def where(self) -> str:
        return self.device

    def _errors(self) -> tuple[type[BaseException], ...]:
        from escpos.exceptions import Error as EscposError

        return (EscposError,)

    def _open(self) -> Any:
        from escpos.exceptions import DeviceNotFoundError
        from escpos.printer import File

        if not os.path.exists(self.device):
            # python-escpos would create it: an unplugged /dev/usb/lp0 would become a plain
            # file that swallows every ticket while reporting success.
            raise DeviceNotFoundError(f"{self.device} does not exist")
        printer = File(devfile=self.device, auto_flush=True)
        if _is_readable_node(self.device):
            # unbuffered read-write: each request goes out at once and answers can be read
            printer.device = open(self.device, "r+b", buffering=0)
        else:
            printer.open()
        return printer

    def _can_answer(self, device: Any) -> bool:
        return sys.platform != "win32" and "+" in device.device.mode

    def _read_byte(self, device: Any) -> int:
        if sys.platform == "win32":
            raise NoStatusChannel
        import select

        handle = device.device

        ready, _, _ = select.select([handle], [], [], self.read_timeout)
        if not ready:
            raise TimeoutError
        answer = os.read(handle.fileno(), 16)
        if not answer:
            raise NoStatusChannel  # end of file: a node that never answers
        return answer[-1]
