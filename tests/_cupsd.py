"""A private cupsd for tests: own config, spool, cache, state and logs in a temp dir.

It listens on a free loopback port and on a domain socket of its own, never on 631, and never
touches the machine's /etc/cups. Queues are added through pycups, with the open policy written
below (no authentication, loopback only).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ._wait import eventually

CUPSD_CANDIDATES = ("/usr/sbin/cupsd", "/usr/local/sbin/cupsd")

CUPSD_CONF = """\
LogLevel debug
MaxLogSize 0
Listen 127.0.0.1:{port}
Listen {socket}
Browsing No
BrowseLocalProtocols none
DefaultAuthType None
WebInterface No
DefaultEncryption Never
# Retry a failed backend soon, so a dead printer does not stop the queue for good.
ErrorPolicy retry-job
JobRetryInterval 1
PreserveJobHistory Yes
<Location />
  Order allow,deny
  Allow from 127.0.0.1
  Allow from @LOCAL
</Location>
<Policy default>
  JobPrivateAccess all
  JobPrivateValues none
  SubscriptionPrivateAccess all
  SubscriptionPrivateValues none
  <Limit All>
    Order deny,allow
  </Limit>
</Policy>
"""

CUPS_FILES_CONF = """\
ServerRoot {root}/etc
RequestRoot {root}/spool
TempDir {root}/spool/tmp
CacheDir {root}/cache
StateDir {root}/state
ErrorLog {root}/log/error_log
AccessLog {root}/log/access_log
PageLog {root}/log/page_log
User {user}
Group {group}
SystemGroup {system_group}
FileDevice No
"""


def find_cupsd() -> str | None:
    found = shutil.which("cupsd")
    if found:
        return found
    return next((c for c in CUPSD_CANDIDATES if os.access(c, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivateCupsd:
    """Start with :meth:`start`, stop with :meth:`stop`; ``server`` is ``127.0.0.1:PORT``."""

    def __init__(self, cupsd: str) -> None:
        self.cupsd = cupsd
        # Not under pytest's tmp_path: that is private to the test user (0700), and cupsd runs
        # backends as ``lp`` when started by root; they must reach the spool.
        self.root = Path(tempfile.mkdtemp(prefix="pm-cupsd-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.socket = self.root / "cups.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def error_log(self) -> str:
        path = self.root / "log" / "error_log"
        return path.read_text(errors="replace") if path.exists() else "(no error_log)"

    def _write_config(self) -> tuple[Path, Path]:
        for sub in ("etc", "spool/tmp", "cache", "state", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user, group, system_group = "lp", "lp", "root"
        else:  # unprivileged cupsd runs everything as the current user
            user = pwd.getpwuid(os.getuid()).pw_name
            group = system_group = grp.getgrgid(os.getgid()).gr_name
        conf = self.root / "etc" / "cupsd.conf"
        files = self.root / "etc" / "cups-files.conf"
        conf.write_text(CUPSD_CONF.format(port=self.port, socket=self.socket))
        files.write_text(
            CUPS_FILES_CONF.format(
                root=self.root, user=user, group=group, system_group=system_group
            )
        )
        return conf, files

    def start(self, timeout: float = 20.0) -> None:
        conf, files = self._write_config()
        log = open(self.root / "log" / "cupsd.out", "wb")
        self._out = log
        self.process = subprocess.Popen(
            [self.cupsd, "-f", "-c", str(conf), "-s", str(files)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"cupsd exited with {process.returncode}:\n"
                    f"{(self.root / 'log' / 'cupsd.out').read_text(errors='replace')}\n"
                    f"{self.error_log[-4000:]}"
                )
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True

        try:
            eventually(listening, timeout=timeout, interval=0.1, ignoring=(OSError,))
        except AssertionError:
            self.stop()
            raise RuntimeError(f"cupsd did not listen on {self.server} within {timeout}s") from None

    def connection(self) -> Any:
        import cups

        return cups.Connection(host="127.0.0.1", port=self.port)

    def add_raw_queue(self, name: str, device_uri: str) -> None:
        conn = self.connection()
        conn.addPrinter(name, device=device_uri, info=f"test queue {name}")
        conn.enablePrinter(name)
        conn.acceptJobs(name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        with contextlib.suppress(AttributeError, OSError):
            self._out.close()
        shutil.rmtree(self.root, ignore_errors=True)
