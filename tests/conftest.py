"""Fixtures: a real Mosquitto with the project's generated config, the real API and real agent
processes, on free loopback ports. Each test gets its own branch and agent ids.

Shared by the test modules: ``stack`` (one per session, or per xdist worker), ``own_stack`` (one
per test), ``start_agent`` and :func:`agents_on` (agents stopped after the test), ``observer``
(a client that sees every message), ``fake_printer``, ``cupsd``, ``ledger`` and ``store``.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

from branch_agent._ledger import LEDGER_FILE, Ledger
from broker import Credentials, free_port
from cloud_api.store import Store, open_store
from ops.fake_printer import FakePrinter
from printermaster.stack import AgentHandle, Stack

from ._mqtt import Probe, create_observer, delete_observer
from .pg import postgres_url

if TYPE_CHECKING:
    from ._cupsd import PrivateCupsd


# On a machine busy with parallel workers, drawing examples can be slow: the health check that
# fails a test for it says nothing about the code. The examples and their number are the same.
settings.register_profile("printermaster", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("printermaster")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run long load and chaos tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long-running: pass --run-slow (see README, 'Tests')")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def unique_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


#: How long a test's API may take to be ready: generous, for a machine busy with parallel tests.
API_READY_S = 60.0


def make_stack(root: Path, **api_overrides: Any) -> Stack:
    """A running broker and API under ``root``; stopped again if the API never gets ready (no
    broker left running behind a failed setup)."""
    stack = Stack(root, mqtt_port=free_port(), http_port=free_port(), api_overrides=api_overrides)
    try:
        stack.start_broker()
        stack.start_api(timeout=API_READY_S)
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Broker and API shared by the session (tests isolate themselves by branch id)."""
    with make_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A broker and API of this test's own, for tests that stop, kill or load them."""
    with make_stack(tmp_path / "stack") as running:
        yield running


AgentFactory = Callable[..., AgentHandle]


@contextmanager
def agents_on(stack: Stack) -> Iterator[AgentFactory]:
    """Start agent processes on ``stack`` in fresh branches; they are stopped when the block
    ends."""
    started: list[AgentHandle] = []

    def start(
        printers: tuple[str, ...] = ("POS-80C",),
        *,
        branch_id: str | None = None,
        wait: bool = True,
        **extra: Any,
    ) -> AgentHandle:
        handle = stack.add_agent(
            branch_id or unique_id("b"), unique_id("a"), list(printers), **extra
        )
        started.append(handle)
        if wait:
            stack.wait_agent(handle.branch_id, handle.agent_id)
        return handle

    try:
        yield start
    finally:
        for handle in started:
            handle.process.stop()


@pytest.fixture
def start_agent(stack: Stack) -> Iterator[AgentFactory]:
    """Start agent processes in fresh branches of the session's stack; they are stopped after
    the test."""
    with agents_on(stack) as start:
        yield start


def job_files(handle: AgentHandle, printer: str = "POS-80C") -> list[Path]:
    return sorted(handle.printer_dir(printer).glob("*.prn"))


@pytest.fixture
def observer(stack: Stack) -> Iterator[Probe]:
    """A privileged client subscribed to ``#``: sees every delivered non-``$`` message."""
    name = unique_id("obs")

    async def make() -> Credentials:
        async with stack.admin() as admin:
            return await create_observer(admin, name)

    probe = Probe(stack.mqtt_port, asyncio.run(make()))
    assert probe.connect() == 0
    assert probe.subscribe("#") == 1
    yield probe
    probe.close()

    async def drop() -> None:
        async with stack.admin() as admin:
            await delete_observer(admin, name)

    asyncio.run(drop())


@pytest.fixture
def fake_printer() -> Iterator[FakePrinter]:
    """A fake ESC/POS network printer on a free loopback port."""
    with FakePrinter() as printer:
        yield printer


@pytest.fixture(scope="module")
def cupsd() -> Iterator[PrivateCupsd]:
    """A private cupsd on a free port, one per test module (see tests/_cupsd.py)."""
    if sys.platform == "win32":
        pytest.skip("cupsd does not run on Windows")
    pytest.importorskip(
        "cups",
        reason="pycups not installed: pip install 'printermaster[cups]' (needs libcups2-dev)",
    )
    from ._cupsd import PrivateCupsd, find_cupsd

    binary = find_cupsd()
    if binary is None:
        pytest.skip("cupsd not installed (Debian/Ubuntu: apt-get install cups)")
    server = PrivateCupsd(binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    """An agent's ledger in a fresh directory."""
    async with Ledger(tmp_path / LEDGER_FILE) as opened:
        yield opened


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Store]:
    """An empty job store: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path_factory.mktemp('store')}/jobs.db"
    else:
        url = postgres_url(request)
    opened = await open_store(url)
    try:
        yield opened
    finally:
        await opened.close()
