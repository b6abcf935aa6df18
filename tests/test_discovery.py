"""Discovery of USB printers (the USB enumeration faked at pyusb's seam) and of network printers
on port 9100 (only ever against 127.0.0.0/8 here), up to "discovered, not configured" in the API.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from agent_config import AgentConfig
from branch_agent._discovery import discover, discover_devices, discovered
from branch_agent._discovery_devices import local_subnets, scan_hosts
from broker import free_port
from printermaster.stack import Stack

from ._wait import eventually
from .conftest import AgentFactory


def _config(**discovery: Any) -> AgentConfig:
    raw = {
        "branch_id": "b",
        "agent_id": "a",
        "data_dir": "/nonexistent",
        "mqtt": {"username": "u", "password": "p"},
        "printers": discovery.pop("printers", []),
        "discovery": {"cups": False, "usb": False, **discovery},
    }
    return msgspec.convert(raw, AgentConfig)


# --- USB, faked at the seam ------------------------------------------------------------------


@dataclass
class FakeInterface:
    bInterfaceClass: int


@dataclass
class FakeDevice:
    idVendor: int
    idProduct: int
    bDeviceClass: int = 0
    interfaces: list[int] = field(default_factory=list)

    def __iter__(self) -> Iterator[list[FakeInterface]]:
        yield [FakeInterface(c) for c in self.interfaces]


@pytest.fixture
def usb_bus(monkeypatch: pytest.MonkeyPatch) -> list[FakeDevice]:
    import usb.core

    devices: list[FakeDevice] = []
    monkeypatch.setattr(usb.core, "find", lambda find_all=False, **kw: iter(list(devices)))
    return devices


def test_usb_printers_by_class_or_maker_not_configured(usb_bus: list[FakeDevice]) -> None:
    usb_bus += [
        FakeDevice(0x04B8, 0x0E15),  # Epson TM-T20: a receipt printer maker
        FakeDevice(0x1234, 0x0001, interfaces=[7]),  # some printer-class device
        FakeDevice(0x046D, 0xC31C, interfaces=[3]),  # a keyboard
        FakeDevice(0x0519, 0x0001),  # Star, already configured
    ]
    configured = [{"kind": "usb", "name": "BAR", "vendor_id": 0x0519, "product_id": 0x0001}]
    devices, errors = discover_devices(_config(usb=True, printers=configured))
    assert errors == []
    assert [d.name for d in devices] == ["usb-04b8-0e15", "usb-1234-0001"]
    epson = devices[0]
    assert epson.kind == "usb" and "Epson" in epson.description
    assert epson.config == {
        "kind": "usb",
        "name": "usb-04b8-0e15",
        "vendor_id": 0x04B8,
        "product_id": 0x0E15,
    }
    # the suggested table is a valid printer config as it stands
    from agent_config import parse_printers

    assert parse_printers(msgspec.json.encode([epson.config]))[0].name == "usb-04b8-0e15"


def test_usb_listing_failure_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    import usb.core

    def no_backend(**kw: Any) -> Any:
        raise usb.core.NoBackendError("No backend available")

    monkeypatch.setattr(usb.core, "find", no_backend)
    devices, errors = discover_devices(_config(usb=True))
    assert devices == [] and "No backend available" in errors[0]
    assert discover(_config(usb=True)).device_errors == errors


def test_usb_off_lists_nothing(usb_bus: list[FakeDevice]) -> None:
    usb_bus.append(FakeDevice(0x04B8, 0x0E15))
    assert discover_devices(_config(usb=False)) == ([], [])


# --- network: 127.0.0.0/8 only ---------------------------------------------------------------


class Listener:
    """A TCP listener on one loopback address; counts connections and bytes received."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_server((host, port))
        self.connections = 0
        self.closed = 0
        self.received = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(1)
                try:
                    while data := conn.recv(1024):
                        self.received += len(data)
                except OSError:
                    pass
            self.closed += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def printers_on_loopback() -> Iterator[tuple[int, list[Listener]]]:
    port = free_port()
    listeners = [Listener("127.0.0.1", port), Listener("127.0.0.3", port)]
    yield port, listeners
    for listener in listeners:
        listener.close()


def test_network_scan_finds_open_ports_and_sends_nothing(
    printers_on_loopback: tuple[int, list[Listener]],
) -> None:
    port, listeners = printers_on_loopback
    configured = [{"kind": "network", "name": "BAR", "host": "127.0.0.1", "port": port}]
    config = _config(
        network=True,
        network_subnets=["127.0.0.0/29"],
        network_port=port,
        network_timeout=0.5,
        printers=configured,
    )
    devices, errors = discover_devices(config)
    assert errors == []
    assert [d.name for d in devices] == [f"net-127.0.0.3-{port}"]
    assert devices[0].config == {
        "kind": "network",
        "name": f"net-127.0.0.3-{port}",
        "host": "127.0.0.3",
        "port": port,
    }
    # the listener thread accepts after the kernel did
    eventually(lambda: listeners[1].closed >= 1, timeout=5, interval=0.01)
    assert listeners[1].connections == 1 and listeners[0].connections == 0  # configured: skipped
    assert listeners[1].closed == 1  # the scanner hung up ...
    assert listeners[1].received == 0  # ... without sending a byte: nothing printed


def test_network_discovery_is_off_by_default(
    printers_on_loopback: tuple[int, list[Listener]],
) -> None:
    port, listeners = printers_on_loopback
    config = msgspec.convert(
        {
            "branch_id": "b",
            "agent_id": "a",
            "data_dir": "/nonexistent",
            "mqtt": {"username": "u", "password": "p"},
            "discovery": {"cups": False, "usb": False, "network_port": port},
        },
        AgentConfig,
    )
    assert config.discovery.network is False
    assert discover_devices(config) == ([], [])
    assert all(listener.connections == 0 for listener in listeners)


def test_large_subnets_are_refused_before_any_connection() -> None:
    with pytest.raises(ValueError, match="more than"):
        scan_hosts(["127.0.0.0/8"], max_hosts=1024)
    devices, errors = discover_devices(_config(network=True, network_subnets=["127.0.0.0/16"]))
    assert devices == [] and "network_max_hosts" in errors[0]
    assert scan_hosts(["127.0.0.5/32", "127.0.0.4/31"], max_hosts=4) == [
        "127.0.0.5",
        "127.0.0.4",
    ]


def test_local_subnets_leave_out_loopback_and_narrow_to_24(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psutil

    @dataclass
    class Addr:
        family: int
        address: str
        netmask: str | None

    fake = {
        "lo": [Addr(socket.AF_INET, "127.0.0.1", "255.0.0.0")],
        "eth0": [Addr(socket.AF_INET, "192.168.7.20", "255.255.255.0")],
        "wlan0": [Addr(socket.AF_INET, "10.20.30.40", "255.255.0.0")],
        "ll": [Addr(socket.AF_INET, "169.254.3.4", "255.255.0.0")],
        "v6": [Addr(socket.AF_INET6, "fe80::1", None)],
    }
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: fake)
    # computed only: nothing is probed here
    assert local_subnets() == ["10.20.30.0/24", "192.168.7.0/24"]


def test_discovered_never_blocks_and_then_answers(
    printers_on_loopback: tuple[int, list[Listener]],
) -> None:
    port, _ = printers_on_loopback
    config = _config(
        network=True, network_subnets=["127.0.0.3/32"], network_port=port, interval=60.0
    )
    names = eventually(lambda: [p.name for p in discovered(config)], timeout=10, interval=0.05)
    assert names == [f"net-127.0.0.3-{port}"]


def test_api_shows_discovered_not_configured(
    stack: Stack,
    start_agent: AgentFactory,
    printers_on_loopback: tuple[int, list[Listener]],
) -> None:
    port, _ = printers_on_loopback
    # the default 30 s heartbeat: what discovery finds is published when found
    handle = start_agent(
        discovery={
            "cups": False,
            "usb": False,
            "network": True,
            "network_subnets": ["127.0.0.2/31"],  # 127.0.0.2 and 127.0.0.3
            "network_port": port,
            "interval": 0.5,
        },
    )
    name = f"net-127.0.0.3-{port}"
    url = f"/v1/branches/{handle.branch_id}/agents"
    with stack.client(timeout=5) as http:

        def shown(check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            (agent,) = http.get(url).json()
            assert check(agent), agent
            return dict(agent)

        agent = eventually(
            lambda: shown(lambda a: name in a["discovered"]), interval=0.1, timeout=15
        )
        assert agent["discovered"] == [name]
        (found,) = agent["discovered_printers"]
        assert found["kind"] == "network" and found["config"]["host"] == "127.0.0.3"
        assert agent["printers"] == ["POS-80C"]

        # configured from the API: it leaves "discovered"
        printers = [{"kind": "virtual", "name": "POS-80C"}, found["config"]]
        put = http.put(f"{url}/{handle.agent_id}/printers", json={"printers": printers})
        assert put.status_code == 200, put.text
        eventually(
            lambda: shown(lambda a: name in a["printers"] and not a["discovered"]),
            timeout=15,
            interval=0.1,
        )
