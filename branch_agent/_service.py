"""Running the agent as a service, and stopping it gracefully on every platform.

A service manager stops the agent with a signal: systemd sends ``SIGTERM``; WinSW, the Windows
service wrapper, sends Ctrl+C (Python's ``SIGINT``), and a console's Ctrl+Break is ``SIGBREAK``.
Each of them calls :meth:`Agent.stop`: the agent finishes the ticket on the printer (bounded),
publishes its retained ``offline`` presence itself and disconnects cleanly, so the cloud answers
``AGENT_OFFLINE`` at once instead of waiting for the status heartbeat to expire.

Without these handlers, Ctrl+C on Windows would cancel the agent's task instead: the MQTT
connection closes cleanly (no Last Will) without the agent saying "offline", and the cloud keeps
it online until its last status expires (about 90 s with the default heartbeat).

On POSIX the handlers are the event loop's (``loop.add_signal_handler``); Windows' event loop has
none, so there they are ``signal.signal`` handlers that hand the stop to the loop (the proactor
loop wakes up for signals). ``platform`` picks the path, so tests run the Windows one here.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from ._agent import Agent
from ._config import AgentConfig

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

    def restore_signals() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore_signals


async def serve(config: AgentConfig, *, platform: str = sys.platform) -> None:
    """Run an agent until a stop signal (or :meth:`Agent.stop`) ends it gracefully."""
    agent = Agent(config)
    restore = install_stop_handlers(asyncio.get_running_loop(), agent.stop, platform)
    try:
        await agent.run()
    finally:
        restore()


def run_service(config: AgentConfig) -> int:
    """``printermaster agent run``: serve in this process until stopped; the exit code."""
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:  # a signal that arrived before the handlers were in place
        return 130
    return 0
