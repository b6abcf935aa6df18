"""The supervisor on its own, with versions that are shell scripts standing in for a venv's
python: a trial confirmed, a trial rolled back (crashing, or running but never online), a
restart into the version just switched to, a graceful stop."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from branch_agent._supervisor import EXIT_RESTART, InstallRoot, Supervisor

from ._wait import eventually

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="versions are shell scripts")


def _version(root: InstallRoot, version: str, body: str) -> None:
    """A fake installed version: its "python" runs ``body`` (sh), with $ROOT and $V set."""
    python = root.python(version)
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\nROOT='{root.root}'\nV='{version}'\n{body}\n")
    python.chmod(0o755)
    (root.versions / version / "complete").write_text(version)


#: A version that comes online (as the real agent does: the healthy marker) and runs on;
#: it records each start.
ONLINE = 'echo start >> "$ROOT/starts-$V"; touch "$ROOT/versions/$V/healthy"; exec sleep 60'
#: A version that crashes at once.
CRASH = 'echo start >> "$ROOT/starts-$V"; exit 3'
#: A version that runs but never comes online (cannot reach the broker, hangs, ...).
HANG = 'echo start >> "$ROOT/starts-$V"; exec sleep 60'


def _starts(root: InstallRoot, version: str) -> int:
    path = root.root / f"starts-{version}"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Callable[[InstallRoot], Supervisor]]:
    started: list[tuple[Supervisor, threading.Thread]] = []

    def start(root: InstallRoot) -> Supervisor:
        supervisor = Supervisor(root.root, [])
        thread = threading.Thread(target=supervisor.run, daemon=True)
        thread.start()
        started.append((supervisor, thread))
        return supervisor

    yield start
    for supervisor, thread in started:
        supervisor.stop()
        thread.join(15)
        assert not thread.is_alive()


def test_a_version_that_comes_online_ends_its_trial(tmp_path: Path, running: Callable) -> None:
    root = InstallRoot(tmp_path)
    _version(root, "1", ONLINE)
    _version(root, "2", ONLINE)
    root.start_trial("2", "1", timeout=10)
    running(root)
    eventually(lambda: root.trial() is None, timeout=15, what="the trial to end")
    assert root.current() == "2" and root.rejected() == {}
    assert _starts(root, "1") == 0


@pytest.mark.parametrize("body", [CRASH, HANG], ids=["crashes", "never-online"])
def test_a_version_that_does_not_come_online_is_rolled_back(
    tmp_path: Path, running: Callable, body: str
) -> None:
    root = InstallRoot(tmp_path)
    _version(root, "1", ONLINE)
    _version(root, "2", body)
    root.start_trial("2", "1", timeout=1.5)
    running(root)
    eventually(
        lambda: _starts(root, "1") == 1, timeout=15, what="the previous version to run again"
    )
    assert root.current() == "1" and root.trial() is None
    assert "did not come online within 1.5 s" in root.rejected()["2"]
    assert _starts(root, "2") >= 1


def test_exit_75_restarts_at_once_into_the_current_version(
    tmp_path: Path, running: Callable
) -> None:
    root = InstallRoot(tmp_path)
    # version 1 switches to version 2 and asks for a restart, as the updater does
    switch = f'echo start >> "$ROOT/starts-$V"; printf 2 > "$ROOT/current"; exit {EXIT_RESTART}'
    _version(root, "1", switch)
    _version(root, "2", ONLINE)
    root.set_current("1")
    running(root)
    eventually(lambda: _starts(root, "2") == 1, timeout=5, what="version 2 to start")
    assert _starts(root, "1") == 1


def test_stop_ends_the_running_version(tmp_path: Path, running: Callable) -> None:
    root = InstallRoot(tmp_path)
    _version(root, "1", ONLINE)
    root.set_current("1")
    supervisor = running(root)
    eventually(lambda: _starts(root, "1") == 1, timeout=15, what="version 1 to start")
    child = supervisor._child
    assert child is not None
    supervisor.stop()
    assert child.wait(10) != 0  # terminated


def test_no_installed_version_is_an_error_not_a_loop(tmp_path: Path) -> None:
    assert Supervisor(tmp_path, []).run() == 2
