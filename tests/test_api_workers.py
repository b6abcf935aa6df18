"""Several API processes on one port (``workers``): each its own instance, replies never cross,
a dead worker comes back under its own id, and none outlives its supervisor."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from printermaster.stack import Stack

from ._wait import eventually
from .conftest import job_files, make_stack, unique_id

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="workers need a Unix system")

WORKERS = 2


@pytest.fixture(scope="module")
def workers_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with make_stack(tmp_path_factory.mktemp("workers"), workers=WORKERS) as running:
        yield running


def _stat(pid: int) -> list[str] | None:
    """(state, ppid, ...) of a live process; None when gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields


def _alive(pid: int) -> bool:
    return _stat(pid) is not None


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def _instances_seen(stack: Stack, want: set[str], attempts: int = 200) -> set[str]:
    """Instance ids answering /healthz over fresh connections, until ``want`` are all seen."""
    seen: set[str] = set()
    for _ in range(attempts):
        with httpx.Client(base_url=stack.api_url, timeout=5) as http:
            seen.add(http.get("/healthz").json()["instance_id"])
        if want <= seen:
            break
    return seen


def test_each_worker_is_its_own_instance(workers_stack: Stack) -> None:
    want = {f"api-1.{k}" for k in range(1, WORKERS + 1)}
    assert _instances_seen(workers_stack, want) == want


def test_test_prints_through_all_workers_each_get_their_own_reply(
    workers_stack: Stack,
) -> None:
    agent = workers_stack.add_agent(unique_id("b"), unique_id("a"), ["POS-80C"])
    try:
        # every worker has read the agent's presence before the load starts
        for _ in range(20):
            workers_stack.wait_agent(agent.branch_id, agent.agent_id)
        url = f"/v1/branches/{agent.branch_id}/printers/POS-80C/test"

        def one_connection(n: int) -> list[str]:
            with workers_stack.client(timeout=20) as http:
                ids = []
                for _ in range(n):
                    response = http.post(url)
                    assert response.status_code == 200, response.text
                    ids.append(response.json()["job_id"])
                return ids

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            job_ids = [i for ids in pool.map(one_connection, [15] * 16) for i in ids]
        assert len(set(job_ids)) == 240
        files = job_files(agent)
        assert sorted(f.stem for f in files) == sorted(job_ids)  # each printed exactly once
        for path in files:
            assert path.stem.encode() in path.read_bytes()  # its own page, not another's
    finally:
        agent.process.stop()


def test_a_killed_worker_is_started_again_under_its_id(workers_stack: Stack) -> None:
    assert workers_stack.api is not None and workers_stack.api.pid is not None
    supervisor = workers_stack.api.pid
    before = _children(supervisor)
    assert len(before) == WORKERS
    os.kill(before[0], signal.SIGKILL)
    eventually(
        lambda: len(now := _children(supervisor)) == WORKERS and before[0] not in now,
        timeout=20,
        interval=0.1,
        what=lambda: f"worker restarted: {before} -> {_children(supervisor)}",
    )
    want = {f"api-1.{k}" for k in range(1, WORKERS + 1)}
    eventually(
        lambda: _instances_seen(workers_stack, want, attempts=50) == want,
        timeout=20,
        interval=0.2,
        what="the restarted worker answering",
        ignoring=(httpx.TransportError,),
    )


def test_workers_stop_with_their_supervisor_even_after_kill_9(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, workers=WORKERS)
    try:
        assert stack.api is not None and stack.api.pid is not None
        workers = _children(stack.api.pid)
        assert len(workers) == WORKERS
        stack.api.kill()
        with contextlib.suppress(AssertionError):  # the assertion below names them
            eventually(lambda: not any(_alive(p) for p in workers), timeout=10, interval=0.1)
        alive = [p for p in workers if _alive(p)]
        assert not alive, f"workers outlived their supervisor: {alive}"
    finally:
        stack.stop()


@pytest.mark.parametrize("workers", [0, 65])
def test_workers_out_of_range_is_refused(tmp_path: Path, workers: int) -> None:
    config = tmp_path / "api.toml"
    config.write_text(
        f'api_token = "t"\nworkers = {workers}\n[mqtt]\nusername = "u"\npassword = "p"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "printermaster", "api", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "workers must be between 1 and 64" in done.stderr
