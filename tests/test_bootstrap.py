"""``ops/bootstrap.sh`` waits, bounded, for another apt/dpkg to release its lock."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WAIT = ROOT / "ops" / "wait-dpkg-lock.sh"


def _held_lock(path: Path) -> int:
    """An fcntl lock as dpkg and apt take them, held by this process."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    return fd


def _run(lock: Path, limit: int) -> subprocess.Popen[str]:
    env = {**os.environ, "LOCK_FILES": str(lock), "LOCK_WAIT": str(limit)}
    return subprocess.Popen(
        [str(WAIT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_waits_while_the_lock_is_held_then_goes_on(tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    fd = _held_lock(lock)
    proc = _run(lock, 60)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the progress line: it is waiting
    assert "waiting for another apt/dpkg" in line and str(lock) in line, line
    assert proc.poll() is None
    os.close(fd)  # the other apt is done
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out


def test_gives_up_after_the_limit_with_a_clear_message(tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    fd = _held_lock(lock)
    try:
        started = time.monotonic()
        proc = _run(lock, 2)
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        os.close(fd)
    assert proc.returncode == 1
    assert "still held by another apt/dpkg after 2 s" in out, out
    assert took >= 2


def test_free_lock_passes_at_once(tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    lock.touch()
    proc = _run(lock, 60)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == ""


def test_bootstrap_waits_before_apt() -> None:
    script = (ROOT / "ops" / "bootstrap.sh").read_text()
    assert script.index("wait-dpkg-lock.sh") < script.index("apt-get -o DPkg::Lock::Timeout")
