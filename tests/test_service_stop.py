"""A service stop publishes the agent's offline presence at once, on Linux and on Windows.

The Windows path (``signal.signal`` handlers, as WinSW's Ctrl+C arrives as ``SIGINT``) runs here
through the ``platform`` seam of :mod:`branch_agent._service`, against the real broker and API.
Figures are printed (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiomqtt
import msgspec
import pytest
import tomli_w

from branch_agent import parse_config
from branch_agent._service import loop_factory, serve, stop_signals
from printermaster.stack import Stack
from protocol import Presence, presence_topic

from .conftest import AgentFactory, unique_id


def test_stop_signals_per_platform() -> None:
    assert stop_signals("linux") == [signal.SIGTERM, signal.SIGINT]
    assert stop_signals("win32")[0] is signal.SIGINT  # WinSW's Ctrl+C


def test_windows_runs_the_agent_on_a_selector_loop() -> None:
    # paho-mqtt (under aiomqtt) needs loop.add_reader, which Windows' default proactor lacks
    assert loop_factory("win32") is asyncio.SelectorEventLoop
    loop = loop_factory("linux")()
    loop.close()


async def _presence_watch(stack: Stack, branch: str, agent: str) -> aiomqtt.Client:
    cloud = stack.creds("cloud")
    client = aiomqtt.Client(
        "127.0.0.1",
        stack.mqtt_port,
        username=cloud.username,
        password=cloud.password,
        protocol=aiomqtt.ProtocolVersion.V5,
    )
    await client.__aenter__()
    await client.subscribe(presence_topic(branch, agent), qos=1)
    return client


async def _next_state(client: aiomqtt.Client, state: str) -> Presence:
    async for message in client.messages:
        presence = msgspec.json.decode(bytes(message.payload), type=Presence)  # type: ignore[arg-type, unused-ignore]
        if presence.state == state:
            return presence
    raise AssertionError("subscription ended")


@pytest.mark.parametrize("platform", ["win32", "linux"])
async def test_service_stop_signal_publishes_offline_at_once(stack: Stack, platform: str) -> None:
    branch, agent_id = unique_id("b"), unique_id("a")
    creds = await stack.provision_agent(branch, agent_id)
    # a long heartbeat: a stop that did not publish offline would leave it online for minutes
    raw = stack.agent_config(branch, agent_id, creds, ["POS-80C"], heartbeat_interval=120.0)
    config = parse_config(tomli_w.dumps(raw), "test config")
    watch = await _presence_watch(stack, branch, agent_id)
    before = signal.getsignal(signal.SIGINT)
    try:
        running = asyncio.create_task(serve(config, platform=platform))
        async with asyncio.timeout(15):
            await _next_state(watch, "online")
        await asyncio.to_thread(stack.wait_agent, branch, agent_id)
        stop_sig = stop_signals(platform)[0]
        started = time.monotonic()
        os.kill(os.getpid(), stop_sig)  # as WinSW / systemd send it, from outside
        async with asyncio.timeout(5):
            offline = await _next_state(watch, "offline")
        published = time.monotonic() - started
        async with asyncio.timeout(5):
            await running  # and the agent's run ended
        api_offline = await asyncio.to_thread(
            stack.wait_agent, branch, agent_id, online=False, timeout=5
        )
    finally:
        await watch.__aexit__(None, None, None)
    assert offline.reason == "stopped"
    print(
        f"\n{platform} stop ({stop_sig.name}): offline published after {published * 1000:.0f} ms, "
        f"API saw it offline {api_offline * 1000:.0f} ms after that"
    )
    if platform == "win32":  # the handlers are gone with the agent: SIGINT goes where it went
        assert signal.getsignal(signal.SIGINT) == before


def test_ctrl_c_stops_the_agent_process_cleanly(stack: Stack, start_agent: AgentFactory) -> None:
    """``agent run`` under a console or WinSW: Ctrl+C is SIGINT; offline, then exit 0."""
    handle = start_agent(heartbeat_interval=120.0)
    proc = handle.process.proc
    assert proc is not None
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stack.wait_agent(handle.branch_id, handle.agent_id, online=False, timeout=5)
    assert proc.wait(10) == 0, handle.process.log_tail()
    print(f"\nCtrl+C: API saw the agent offline after {(time.monotonic() - started) * 1000:.0f} ms")
