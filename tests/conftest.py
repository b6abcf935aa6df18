"""Fixtures: a real Mosquitto with the project's generated config, the real API and real agent
processes, on free loopback ports. Each test gets its own branch and agent ids."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker import free_port
from cloud_api.store import Store, open_store
from ops.fake_printer import FakePrinter
from printermaster.stack import AgentHandle, Stack

from .pg import postgres_url


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


def make_stack(root: Path, **api_overrides: Any) -> Stack:
    stack = Stack(root, mqtt_port=free_port(), http_port=free_port(), api_overrides=api_overrides)
    stack.start_broker()
    stack.start_api()
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Broker and API shared by the session (tests isolate themselves by branch id)."""
    with make_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


AgentFactory = Callable[..., AgentHandle]


@pytest.fixture
def start_agent(stack: Stack) -> Iterator[AgentFactory]:
    """Start agent processes in fresh branches; they are stopped after the test."""
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

    yield start
    for handle in started:
        handle.process.stop()


def job_files(handle: AgentHandle, printer: str = "POS-80C") -> list[Path]:
    return sorted(handle.printer_dir(printer).glob("*.prn"))


@pytest.fixture
def fake_printer() -> Iterator[FakePrinter]:
    """A fake ESC/POS network printer on a free loopback port."""
    with FakePrinter() as printer:
        yield printer


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
