"""Serve the API with uvicorn (uvloop + httptools where available), in one process or in
``workers`` processes sharing one listening socket.

Each worker is a whole API instance: its own MQTT session, reply topic and ``instance_id``
(``{instance_id}.{k}`` for worker *k*), so a reply always reaches the process that waits for it.
A worker that dies is started again under the same id: its persistent MQTT session and its
in-flight jobs (``sent_by``) are its own, and it recovers them as a restarted single API does.
The workers share the job store; with SQLite that is one file written by several processes
(WAL serialises their commits), PostgreSQL serves several machines.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import uvicorn

from mqtt_adapter import Backoff
from pmlog import configure_logging

from ._app import create_app
from ._httplimits import limited_httptools
from ._settings import ApiSettings

log = logging.getLogger("cloud_api.server")

#: A worker that lived this long before dying is restarted at once (else with backoff).
_HEALTHY_RUN_S = 30.0


def worker_settings(settings: ApiSettings, index: int) -> ApiSettings:
    """The settings of worker ``index`` (1-based) out of ``settings.workers``."""
    if settings.workers <= 1:
        return settings
    return msgspec.structs.replace(settings, instance_id=f"{settings.instance_id}.{index}")


def _configure_logging(settings: ApiSettings) -> None:
    configure_logging(settings.log_level, settings.log_format)


def serve(settings: ApiSettings, *, sock: socket.socket | None = None) -> None:
    """Run one API instance until SIGTERM/SIGINT; on ``sock`` when given (a worker)."""
    _configure_logging(settings)
    fast = sys.platform != "win32"
    http: Any = (
        limited_httptools(settings.max_header_bytes, settings.max_header_count) if fast else "h11"
    )
    config = uvicorn.Config(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop" if fast else "asyncio",
        http=http,
        # h11's own bound on the request head (the httptools protocol counts for itself)
        h11_max_incomplete_event_size=settings.max_header_bytes,
        lifespan="on",
        # our own access log (cloud_api.access) has the route, trace id and principal; and
        # uvicorn's records go through the one log format instead of its own
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
        # longer than a load balancer's idle timeout (60 s on most), so the balancer closes an
        # idle keep-alive connection first and never sends into one we are closing
        timeout_keep_alive=75,
    )
    uvicorn.Server(config).run(sockets=[sock] if sock is not None else None)


def serve_worker(settings: ApiSettings, index: int, fd: int) -> None:
    """One worker of :func:`serve_workers`: serve on the inherited socket ``fd`` and stop when
    the supervisor is gone (even after its ``kill -9``), so no orphan keeps the port."""
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    sock = socket.socket(fileno=fd)
    serve(worker_settings(settings, index), sock=sock)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket the workers share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_workers(settings: ApiSettings, config_path: Path) -> int:
    """Supervise ``settings.workers`` worker processes on one socket until SIGTERM/SIGINT.

    Returns 0 after a requested stop. A worker that exits on its own is started again (at once
    after a long healthy run, else with capped backoff); the others keep serving meanwhile.
    """
    _configure_logging(settings)
    if sys.platform == "win32":
        raise OSError("workers > 1 needs a Unix system (sockets are shared by inheritance)")
    sock = listen(settings.http_host, settings.http_port)
    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def start(index: int) -> subprocess.Popen[bytes]:
        argv: Sequence[str] = [
            sys.executable,
            "-m",
            "printermaster",
            "api",
            "--config",
            str(config_path),
            "--worker",
            str(index),
            "--fd",
            str(sock.fileno()),
        ]
        proc = subprocess.Popen(argv, pass_fds=[sock.fileno()], stdin=subprocess.DEVNULL)
        log.info("worker %d (%s) started, pid %d", index, _instance(settings, index), proc.pid)
        return proc

    workers = {index: start(index) for index in range(1, settings.workers + 1)}
    started = {index: time.monotonic() for index in workers}
    backoff = {index: Backoff(base=0.5, cap=10.0) for index in workers}
    restart_at: dict[int, float] = {}
    try:
        while not stopping.is_set():
            now = time.monotonic()
            for index, proc in list(workers.items()):
                code = proc.poll()
                if code is None:
                    continue
                if index not in restart_at:
                    lived = now - started[index]
                    if lived >= _HEALTHY_RUN_S:
                        backoff[index].reset()
                    delay = backoff[index].next()
                    log.error(
                        "worker %d exited with %s after %.1f s; starting it again in %.1f s",
                        index,
                        code,
                        lived,
                        delay,
                    )
                    restart_at[index] = now + delay
                elif now >= restart_at[index]:
                    del restart_at[index]
                    workers[index] = start(index)
                    started[index] = time.monotonic()
            stopping.wait(0.2)
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in workers.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sock.close()
    return 0


def _instance(settings: ApiSettings, index: int) -> str:
    return worker_settings(settings, index).instance_id
