"""Connect time and request/reply round trip over plain TCP, TLS and WebSockets+TLS.

Run from the repository root: ``PYTHONPATH=. python bench/tls_latency.py [rounds]``. Starts its
own Mosquitto with the generated config on free loopback ports. The "agent" connects over the
transport under test; the "cloud" stays on the plain loopback listener, as in production.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

import broker as b
from broker import write_initial_dynsec
from mqtt_adapter import make_client, set_tcp_nodelay, tcp_nodelay
from protocol import reply_topic, request_topic

BRANCH, AGENT = "bench", "a1"


def client(
    cfg: b.BrokerConfig, ca_pem: str, creds: b.Credentials, transport: str, nodelay: bool = True
) -> aiomqtt.Client:
    kwargs: dict[str, Any] = {}
    port: int | None = cfg.port
    if transport != "plain":
        kwargs["tls_context"] = ssl.create_default_context(cadata=ca_pem)
        port = cfg.tls_port
    if transport == "wss":
        kwargs |= {"transport": "websockets", "websocket_path": "/mqtt"}
        port = cfg.websockets_port
    assert port is not None, f"{transport} listener not configured"
    # socket options only (or none): the WebSockets case measures what the helper adds
    return make_client(
        "127.0.0.1",
        port,
        username=creds.username,
        password=creds.password,
        nodelay="socket_options" if nodelay else False,
        **kwargs,
    )


def nodelay_of(c: aiomqtt.Client) -> int:
    return tcp_nodelay(c)


async def connect_times(
    cfg: b.BrokerConfig, ca_pem: str, creds: b.Credentials, transport: str, n: int = 30
) -> list[float]:
    times = []
    for _ in range(n):
        c = client(cfg, ca_pem, creds, transport)
        t0 = time.perf_counter()
        await c.__aenter__()
        times.append(time.perf_counter() - t0)
        await c.__aexit__(None, None, None)
    return times


async def round_trips(
    cfg: b.BrokerConfig,
    ca_pem: str,
    cloud_creds: b.Credentials,
    agent_creds: b.Credentials,
    transport: str,
    *,
    helper: bool,
    nodelay: bool,
    rounds: int,
    payload: bytes,
) -> tuple[list[float], int, int]:
    req, rep = request_topic(BRANCH, AGENT), reply_topic(BRANCH, "bench", AGENT)
    async with (
        client(cfg, ca_pem, cloud_creds, "plain", nodelay) as cloud,
        client(cfg, ca_pem, agent_creds, transport, nodelay) as agent,
    ):
        before = nodelay_of(agent)
        if helper:
            set_tcp_nodelay(agent)
        after = nodelay_of(agent)
        await agent.subscribe(req, qos=1)
        await cloud.subscribe(rep, qos=1)

        async def serve() -> None:
            async for m in agent.messages:
                await agent.publish(rep, m.payload, qos=1)

        server = asyncio.create_task(serve())
        times = []
        for i in range(rounds + 10):
            t0 = time.perf_counter()
            async with asyncio.timeout(10):
                await cloud.publish(req, payload, qos=1)
                await anext(cloud.messages)
            if i >= 10:
                times.append(time.perf_counter() - t0)
        # Python 3.11's asyncio.wait_for (inside aiomqtt's publish) can swallow a cancellation
        # that lands as the PUBACK arrives, so do not wait for the task: the disconnect below
        # ends it either way.
        server.add_done_callback(lambda t: t.cancelled() or t.exception())
        server.cancel()
        return times, before, after


def ms(values: list[float]) -> str:
    q = statistics.quantiles(values, n=20)
    return f"median {statistics.median(values) * 1e3:7.2f} ms  p95 {q[18] * 1e3:7.2f} ms"


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        cfg = b.BrokerConfig(
            state_dir=state,
            port=b.free_port(),
            tls_port=b.free_port(),
            websockets_port=b.free_port(),
            tls_bind_address="127.0.0.1",
        )
        admin = b.Credentials("admin", b.new_password())
        cloud = b.Credentials("cloud", b.new_password())
        agent = b.Credentials(b.agent_username(BRANCH, AGENT), b.new_password())
        write_initial_dynsec(
            cfg.dynsec_path,
            admin,
            clients=[(cloud, [b.CLOUD_ROLE]), (agent, [b.agent_role_name(BRANCH, AGENT)])],
            roles=[b.cloud_role(), b.agent_role(BRANCH, AGENT)],
        )
        with b.MosquittoProcess(cfg) as proc:
            assert proc.tls is not None
            ca = proc.tls.ca_pem
            print(f"connect (TCP+TLS+MQTT CONNECT/CONNACK), {30} connects each")
            for transport in ("plain", "tls", "wss"):
                print(f"  {transport:5}  {ms(await connect_times(cfg, ca, agent, transport))}")
            print(f"request/reply round trip, QoS 1 both ways, {rounds} rounds, 100 B payload")
            cases = [
                ("plain", False, True),
                ("plain", False, False),
                ("tls", False, True),
                ("tls", False, False),
                ("wss", False, True),
                ("wss", True, True),
            ]
            for transport, helper, nodelay in cases:
                times, before, after = await round_trips(
                    cfg,
                    ca,
                    cloud,
                    agent,
                    transport,
                    helper=helper,
                    nodelay=nodelay,
                    rounds=rounds,
                    payload=b"x" * 100,
                )
                label = f"{transport}{' +set_tcp_nodelay' if helper else ''}"
                label += "" if nodelay else " (no socket_options)"
                print(f"  {label:36} {ms(times)}  agent TCP_NODELAY {before}->{after}")
            print("request/reply round trip, 256 KiB payload, 20 rounds")
            for transport in ("plain", "tls", "wss"):
                times, _, _ = await round_trips(
                    cfg,
                    ca,
                    cloud,
                    agent,
                    transport,
                    helper=True,
                    nodelay=True,
                    rounds=20,
                    payload=os.urandom(256 * 1024),
                )
                print(f"  {transport:5}  {ms(times)}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
