"""The artifacts a chain installs, built and run as they ship: the wheel in a fresh venv, and the
single-file agent (PyInstaller), each against a real broker and API.

Both are cached in ``build/`` (gitignored): the wheel from ``make build`` (dist/) is reused while
it is newer than every source file, the venv while the wheel is the same, the executable while
no source file changed. A cold run builds everything once (about a minute for the wheel's venv,
one to two for the executable on a busy machine).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import tomli_w

from printermaster.stack import Stack

from ._releases import PACKAGES
from .conftest import unique_id

# one xdist worker builds and uses the build/ cache: two would build into it at once
pytestmark = [pytest.mark.build, pytest.mark.timeout(900), pytest.mark.xdist_group("build")]

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "pkgtest"
BIN = "Scripts" if sys.platform == "win32" else "bin"


def _sources() -> list[Path]:
    files = [ROOT / "pyproject.toml", ROOT / "README.md"]
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def _sources_hash(*extra: Path) -> str:
    digest = hashlib.sha256()
    for path in [*_sources(), *extra]:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH: the installed code runs, not the checkout's."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def dist() -> Path:
    """A directory holding this checkout's wheel and sdist (``make build``'s, or built now)."""
    newest_source = max(p.stat().st_mtime for p in _sources())
    out = CACHE / "dist"
    for made in (ROOT / "dist", out):  # `make build`'s, or the one this test built before
        built = [*made.glob("printermaster-*.whl"), *made.glob("printermaster-*.tar.gz")]
        if len(built) == 2 and all(p.stat().st_mtime > newest_source for p in built):
            return made
    if out.exists():
        for old in out.iterdir():
            old.unlink()
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], timeout=600)
    return out


@pytest.fixture(scope="session")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("printermaster-*.whl")
    return found


def _interpreter(version: str) -> str | None:
    """A Python ``version`` ("3.12") on this machine: this one, one on PATH, or pyenv's."""
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":
        return str(getattr(sys, "_base_executable", sys.executable))
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which(f"python{version}")]
    candidates += [str(p) for p in sorted(pyenv.glob(f"{version}.*/bin/python{version}"))]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == str(
            tuple(map(int, version.split(".")))
        ):
            return candidate
    return None


#: Debian 12's Python and Ubuntu 24.04's: the wheel must install and run on both.
SUPPORTED = ["3.11", "3.12"]


@pytest.fixture(scope="session", params=SUPPORTED)
def venv(request: pytest.FixtureRequest, wheel: Path) -> Path:
    """A fresh venv of each supported Python with only the wheel (and its dependencies)
    installed; reused while the wheel is the same."""
    version = request.param
    base = _interpreter(version)
    if base is None:
        pytest.skip(f"no Python {version} on this machine to install the wheel with")
    key = hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]
    where = CACHE / f"venv{version}-{key}"
    if (where / "installed").exists():
        return where
    for old in CACHE.glob(f"venv{version}-*"):
        subprocess.run(["rm", "-rf", str(old)], check=False)
    _run([base, "-m", "venv", str(where)], timeout=120)
    _run(
        [str(where / BIN / "python"), "-m", "pip", "install", "-q", "--no-compile", str(wheel)],
        timeout=600,
        env=_clean_env(),
    )
    (where / "installed").write_text(wheel.name)
    return where


def _agent_config(stack: Stack, tmp_path: Path, **extra: object) -> tuple[Path, str, str]:
    import asyncio

    branch, agent = unique_id("b"), unique_id("a")
    creds = asyncio.run(stack.provision_agent(branch, agent))
    config = stack.agent_config(branch, agent, creds, ["POS-80C"], **extra)
    config["data_dir"] = str(tmp_path / "data")
    path = tmp_path / "agent.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        tomli_w.dump(config, fh)
    return path, branch, agent


def test_sdist_has_every_package_and_the_metadata(dist: Path) -> None:
    (sdist,) = dist.glob("printermaster-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "branch_agent/_service.py"} <= names
    assert {f"{p}/__init__.py" for p in PACKAGES} <= names


def test_python_310_is_refused_with_a_clear_message(wheel: Path, tmp_path: Path) -> None:
    """Ubuntu 22.04's Python: pip says why, before it installs anything (that box runs the
    single-file agent)."""
    base = _interpreter("3.10")
    if base is None:
        pytest.skip("no Python 3.10 on this machine")
    _run([base, "-m", "venv", str(tmp_path / "venv")], timeout=120)
    done = subprocess.run(
        [str(tmp_path / "venv" / BIN / "python"), "-m", "pip", "install", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
    )
    assert done.returncode != 0
    assert "requires a different Python" in done.stderr and ">=3.11" in done.stderr, done.stderr


def test_installed_wheel_runs_the_doctor_against_a_stack(
    venv: Path, stack: Stack, tmp_path: Path
) -> None:
    python, cli = venv / BIN / "python", venv / BIN / "printermaster"
    where = _run(
        [str(python), "-c", "import branch_agent; print(branch_agent.__file__)"],
        cwd=tmp_path,
        env=_clean_env(),
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), f"imported from {where}, not the venv"
    config, branch, agent = _agent_config(stack, tmp_path)
    done = subprocess.run(
        [str(cli), "agent", "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(),
        timeout=120,
    )
    print("\n" + done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All checks passed" in done.stdout
    assert f"branch {branch}, agent {agent}" in done.stdout
    # the doctor runs before the agent ever started: its data dir is still to be created
    assert "[OK]   data dir" in done.stdout


# --- the single-file agent ------------------------------------------------------------------

SPEC = ROOT / "ops" / "pyinstaller" / "printermaster-agent.spec"
ENTRY = ROOT / "ops" / "pyinstaller" / "agent.py"


@pytest.fixture(scope="session")
def agent_exe() -> Path:
    """``dist/printermaster`` built by PyInstaller from this checkout; reused while no source
    file changed."""
    pytest.importorskip("PyInstaller", reason="PyInstaller is not installed (dev extra)")
    key = _sources_hash(SPEC, ENTRY)
    out = CACHE / f"exe-{key}"
    exe = out / ("printermaster.exe" if sys.platform == "win32" else "printermaster")
    if exe.exists():
        return exe
    for old in CACHE.glob("exe-*"):
        subprocess.run(["rm", "-rf", str(old)], check=False)
    started = time.monotonic()
    _run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            str(out),
            # the analysis cache in the work path makes a rebuild after a change quicker
            "--workpath",
            str(CACHE / "pyinstaller-work"),
            str(SPEC),
        ],
        cwd=ROOT,
        timeout=900,
    )
    print(f"\nsingle-file agent built in {time.monotonic() - started:.0f} s")
    return exe


@pytest.fixture
def exe_process(agent_exe: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("stop", ["systemd", "ctrl-c"])
def test_single_file_agent_comes_online_and_stops_offline(
    agent_exe: Path,
    stack: Stack,
    tmp_path: Path,
    exe_process: list[subprocess.Popen[bytes]],
    stop: str,
) -> None:
    """Started as a service starts it; stopped with SIGTERM as systemd does, or with Ctrl+C to
    the whole process group as a console (and WinSW on Windows) does: the bootloader and the
    agent both get it, and the agent still says offline before it exits."""
    config, branch, agent = _agent_config(stack, tmp_path, heartbeat_interval=120.0)
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(agent_exe), "agent", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=_clean_env(),
            start_new_session=True,
        )
    exe_process.append(proc)
    try:
        took = stack.wait_agent(branch, agent, timeout=60)
    except TimeoutError:
        raise AssertionError(log.read_text()) from None
    print(f"\nsingle-file agent online {took:.1f} s after start")
    with stack.client(timeout=10) as http:
        response = http.post(f"/v1/branches/{branch}/printers/POS-80C/test")
    assert response.status_code == 200, response.text
    assert list((tmp_path / "data" / "virtual" / "POS-80C").glob("*.prn"))
    if stop == "systemd":  # the bootloader hands SIGTERM on to the agent
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    stack.wait_agent(branch, agent, online=False, timeout=10)
    assert proc.wait(30) == 0, log.read_text()
    assert _group(proc.pid) == [], "a process of the agent outlived the stop"


def _group(pgid: int) -> list[int]:
    """Live processes of a process group."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except (OSError, psutil.Error):
            continue
    return found
