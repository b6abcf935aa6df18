"""Run and stop Mosquitto from Python (dev stack, demo, tests, benchmarks)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from ._config import BrokerConfig, find_mosquitto, render_mosquitto_conf
from ._errors import BrokerError
from ._tls import TlsMaterial, ensure_tls_material


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"nothing listens on {host}:{port} after {timeout:.0f}s"
                ) from None
            time.sleep(0.02)


class MosquittoProcess:
    """One Mosquitto process for a :class:`BrokerConfig`; a context manager.

    ``kill()`` and ``start()`` again simulate a broker crash with persistence.
    """

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None
        #: CA and server certificate once :meth:`write_config` ran with TLS listeners configured.
        self.tls: TlsMaterial | None = None

    def write_config(self) -> Path:
        """Write ``mosquitto.conf`` and, for TLS listeners, create or reuse the certificates."""
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        if self.config.tls_enabled:
            self.tls = ensure_tls_material(
                self.config.tls_dir,
                hostnames=self.config.tls_hostnames,
                ip_addresses=self.config.tls_ip_addresses,
            )
        self.config.conf_path.write_text(render_mosquitto_conf(self.config))
        return self.config.conf_path

    def start(self, timeout: float = 10.0) -> Self:
        if not self.config.dynsec_path.exists():
            raise BrokerError(f"{self.config.dynsec_path} is missing: provision the broker first")
        conf = self.write_config()
        self._proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        try:
            for host, port in self.config.listener_ports():
                wait_for_port(host, port, max(0.1, deadline - time.monotonic()))
        except BrokerError:
            err = b""
            if self._proc.poll() is not None and self._proc.stderr is not None:
                err = self._proc.stderr.read()
            self.kill()
            tail = self._log_tail()
            raise BrokerError(
                f"mosquitto did not start on ports {[p for _, p in self.config.listener_ports()]}: "
                f"{err.decode(errors='replace').strip()} {tail}"
            ) from None
        return self

    def _log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.config.log_path.read_text().splitlines()[-lines:])
        return ""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop (SIGTERM): Mosquitto saves its persistence file first."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._close()

    def kill(self) -> None:
        """``kill -9``: no goodbye, no final save."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._close()

    def _close(self) -> None:
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
