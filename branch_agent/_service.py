"""Running the agent as a service, and stopping it gracefully on every platform.

A service manager stops the agent with a signal: systemd sends ``SIGTERM``; WinSW, the Windows
service wrapper, sends Ctrl+C (Python's ``SIGINT``), and a console's Ctrl+Break is ``SIGBREAK``.
Each of them calls :meth:`Agent.stop`: the agent finishes the ticket on the printer (bounded),
publishes its retained ``offline`` presence itself and disconnects cleanly, so the cloud answers
``AGENT_OFFLINE`` at once instead of waiting for the status heartbeat to expire.

Without these handlers, Ctrl+C on Windows would cancel the agent's task instead: the MQTT
connection closes cleanly (no Last Will) without the agent saying "offline", and the cloud keeps
it online until its last status expires (about 90 s with the default heartbeat).

On POSIX the handlers are the event loop's (``loop.add_signal_handler``). Windows' event loops
have none, so there they are ``signal.signal`` handlers that hand the stop to the loop, and a
socket pair registered as the signal wakeup fd wakes the loop's ``select`` at once.

On Windows the loop is a ``SelectorEventLoop``: paho-mqtt, under aiomqtt, watches its socket
with ``loop.add_reader``, which Windows' default ``ProactorEventLoop`` does not implement.
``platform`` picks the path, so tests run the Windows one here.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable

from agent_config import AgentConfig

from ._agent import Agent

log = logging.getLogger("branch_agent")


def stop_signals(platform: str = sys.platform) -> list[signal.Signals]:
    """The signals a service manager stops the agent with on ``platform``."""
    if platform == "win32":
        sigbreak = getattr(signal, "SIGBREAK", None)  # Windows only
        return [signal.SIGINT, *([sigbreak] if sigbreak is not None else [])]
    return [signal.SIGTERM, signal.SIGINT]


def install_stop_handlers(
    loop: asyncio.AbstractEventLoop, stop: Callable[[], None], platform: str = sys.platform
) -> Callable[[], None]:
    """Call ``stop`` on the loop when a stop signal arrives; returns a function that undoes it.

    Must run in the main thread (Python delivers signals there)."""
    signals = stop_signals(platform)

    def on_signal(signum: int) -> None:
        log.info("stop requested (%s): going offline", signal.Signals(signum).name)
        stop()

    if platform != "win32":
        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)

        def restore_loop() -> None:
            for sig in signals:
                loop.remove_signal_handler(sig)

        return restore_loop

    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, lambda signum, _frame: loop.call_soon_threadsafe(on_signal, signum))
    # Python runs a signal handler when the main thread gets back to bytecode; a selector loop
    # blocked in select() gets there at once only if the signal also writes to a socket it
    # watches.
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    loop.add_reader(wake_r.fileno(), _drain, wake_r)
    previous_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)

    def restore_signals() -> None:
        signal.set_wakeup_fd(previous_fd)
        loop.remove_reader(wake_r.fileno())
        wake_r.close()
        wake_w.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore_signals


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(64):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def loop_factory(platform: str = sys.platform) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop the agent runs on: a selector loop on Windows (see the module doc)."""
    if platform == "win32":
        return asyncio.SelectorEventLoop
    return asyncio.new_event_loop


async def serve(config: AgentConfig, *, platform: str = sys.platform) -> int:
    """Run an agent until a stop signal (or :meth:`Agent.stop`) ends it gracefully; the exit
    code (75: an update was installed, restart into it)."""
    agent = Agent(config)
    restore = install_stop_handlers(asyncio.get_running_loop(), agent.stop, platform)
    try:
        await agent.run()
    finally:
        restore()
    return agent.fleet.exit_code


def run_service(config: AgentConfig) -> int:
    """``printermaster agent run``: serve in this process until stopped; the exit code."""
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(serve(config))
    except KeyboardInterrupt:  # a signal that arrived before the handlers were in place
        return 130
