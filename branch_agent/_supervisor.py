"""Side-by-side versions of the agent, and the supervisor that runs the current one.

An install root holds every installed version next to the others and a pointer to the one in
use::

    {root}/current                   the version in use (a text file: works on Windows too)
    {root}/versions/{v}/venv/        a virtualenv with that version's wheel in it
    {root}/versions/{v}/healthy      written by version v once it came online
    {root}/trial.json                the version on trial, the previous one, start, timeout
    {root}/rejected.json             versions rolled back, and why: never installed again
    {root}/deps.pth                  where the dependencies live (base site-packages)

A version's venv holds the PrinterMaster wheel only (extracted: wheels of pure Python need no
build step); ``deps.pth`` adds the base environment's site-packages after it, so every version
runs on the dependencies the box was installed with. A release that needs other dependencies is
a new base install (docs/updates.md).

The supervisor (``printermaster agent supervise``, what the service manager starts) runs
``{root}/versions/{current}/venv/bin/python -I -m printermaster agent run`` and restarts it when
it exits. Exit code :data:`EXIT_RESTART` asks for a restart at once (the agent switched
``current`` to a new version). While a trial is open, the new version must write its
``healthy`` marker within ``timeout`` seconds; if it crashes or stays offline that long, the
supervisor stops it, points ``current`` back to the previous version, records the version in
``rejected.json`` and starts the previous one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import site
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

log = logging.getLogger("branch_agent.supervisor")

#: The agent's exit code for "restart me into the version ``current`` names now".
EXIT_RESTART: Final = 75
#: Seconds between two starts of a version that exited on its own (systemd's RestartSec).
RESTART_DELAY_S: Final = 1.0
_POLL_S: Final = 0.1


class InstallError(Exception):
    """A version could not be installed; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Trial:
    version: str
    previous: str
    started: float
    timeout: float


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class InstallRoot:
    """The files of an install root (see the module docstring); every write is atomic."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions = self.root / "versions"

    def venv_dir(self, version: str) -> Path:
        return self.versions / version / "venv"

    def python(self, version: str) -> Path:
        scripts = "Scripts" if os.name == "nt" else "bin"
        exe = "python.exe" if os.name == "nt" else "python"
        return self.venv_dir(version) / scripts / exe

    def installed(self, version: str) -> bool:
        return self.python(version).exists() and (self.versions / version / "complete").exists()

    def current(self) -> str | None:
        try:
            return (self.root / "current").read_text().strip() or None
        except FileNotFoundError:
            return None

    def set_current(self, version: str) -> None:
        _write_atomic(self.root / "current", version.encode())

    def trial(self) -> Trial | None:
        try:
            raw = json.loads((self.root / "trial.json").read_text())
            return Trial(
                str(raw["version"]),
                str(raw["previous"]),
                float(raw["started"]),
                float(raw["timeout"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("ignoring an unreadable trial.json: %s", exc)
            return None

    def start_trial(self, version: str, previous: str, timeout: float) -> None:
        """Switch ``current`` to ``version`` on trial (``previous`` is what it rolls back to)."""
        with contextlib.suppress(FileNotFoundError):
            (self.versions / version / "healthy").unlink()
        trial = {"version": version, "previous": previous, "started": time.time()}
        trial["timeout"] = timeout
        _write_atomic(self.root / "trial.json", json.dumps(trial).encode())
        self.set_current(version)

    def end_trial(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / "trial.json").unlink()

    def healthy(self, version: str) -> bool:
        return (self.versions / version / "healthy").exists()

    def mark_healthy(self, version: str) -> None:
        """Called by the running agent once online; a no-op outside an install root."""
        if (self.versions / version).is_dir():
            _write_atomic(self.versions / version / "healthy", str(time.time()).encode())

    def rejected(self) -> dict[str, str]:
        try:
            raw = json.loads((self.root / "rejected.json").read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

    def reject(self, version: str, reason: str) -> None:
        rejected = self.rejected()
        rejected[version] = reason
        _write_atomic(self.root / "rejected.json", json.dumps(rejected).encode())

    def roll_back(self, trial: Trial, reason: str) -> None:
        self.reject(trial.version, reason)
        self.set_current(trial.previous)
        self.end_trial()
        log.error("rolled back from %s to %s: %s", trial.version, trial.previous, reason)

    # --- installing --------------------------------------------------------------------------

    def write_deps(self, paths: list[str] | None = None) -> None:
        """Record where the dependencies live: the running environment's site-packages."""
        self.root.mkdir(parents=True, exist_ok=True)
        lines = paths if paths is not None else [*site.getsitepackages()]
        _write_atomic(self.root / "deps.pth", ("\n".join(lines) + "\n").encode())

    def install_wheel(self, wheel: Path, version: str) -> None:
        """Install ``wheel`` as ``version`` in a fresh venv of its own (blocking)."""
        if self.installed(version):
            return
        deps = self.root / "deps.pth"
        if not deps.exists():
            raise InstallError(f"{deps} is missing: install the first version with the CLI")
        target = self.versions / version
        tmp = self.versions / f".{version}.installing"
        _remove_tree(tmp)
        _remove_tree(target)
        try:
            venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt", clear=True).create(
                tmp / "venv"
            )
            base = str(tmp / "venv")
            purelib = Path(sysconfig.get_path("purelib", vars={"base": base, "platbase": base}))
            _extract_wheel(wheel, purelib)
            (purelib / "_printermaster_deps.pth").write_bytes(deps.read_bytes())
            (tmp / "complete").write_text(version)
            os.replace(tmp, target)
        except InstallError:
            _remove_tree(tmp)
            raise
        except (OSError, zipfile.BadZipFile) as exc:
            _remove_tree(tmp)
            raise InstallError(f"installing {wheel.name} failed: {exc}") from exc


def _remove_tree(path: Path) -> None:
    import shutil

    if path.exists():
        shutil.rmtree(path)


def _extract_wheel(wheel: Path, purelib: Path) -> None:
    """Unpack a pure-Python wheel into ``purelib``; refuse names that leave it."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        if not any(n.endswith(".dist-info/METADATA") for n in names):
            raise InstallError(f"{wheel.name} is not a wheel (no .dist-info/METADATA)")
        for name in names:
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                raise InstallError(f"{wheel.name}: refusing member {name!r}")
            if len(parts) > 1 and parts[0].endswith(".data"):
                raise InstallError(f"{wheel.name}: only pure-Python wheels are supported")
        zf.extractall(purelib)


# --- the supervisor ----------------------------------------------------------------------------


class Supervisor:
    """Runs the current version, restarts it, and rolls a trial back (module docstring)."""

    def __init__(self, root: str | Path, agent_args: list[str]) -> None:
        self.install = InstallRoot(root)
        self.agent_args = agent_args
        self._stopping = False
        self._child: subprocess.Popen[bytes] | None = None

    def stop(self, *_: Any) -> None:
        self._stopping = True
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()

    def _start(self, version: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        argv = [str(self.install.python(version)), "-I", "-m", "printermaster", "agent", "run"]
        log.info("starting version %s", version)
        # -I and cwd=root: the version's own code, never a checkout in the working directory.
        return subprocess.Popen([*argv, *self.agent_args], cwd=self.install.root, env=env)

    def _wait(self, child: subprocess.Popen[bytes], until: float | None = None) -> int | None:
        """The child's exit code, or None when ``until`` passed or we are stopping."""
        while True:
            try:
                return child.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                pass
            if self._stopping or (until is not None and time.time() >= until):
                return None

    def _end(self, child: subprocess.Popen[bytes]) -> None:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def run(self) -> int:
        while not self._stopping:
            version = self.install.current()
            if version is None or not self.install.installed(version):
                log.error("no installed current version in %s", self.install.root)
                return 2
            trial = self.install.trial()
            if trial is not None and trial.version != version:
                trial = None
            child = self._child = self._start(version)
            code: int | None = None
            if trial is not None:
                deadline = trial.started + trial.timeout
                while code is None and not self._stopping:
                    if self.install.healthy(version):
                        log.info("version %s came online: trial over", version)
                        self.install.end_trial()
                        break
                    if time.time() >= deadline:
                        self._end(child)
                        self.install.roll_back(
                            trial, f"did not come online within {trial.timeout:g} s"
                        )
                        break
                    code = self._wait(child, until=min(deadline, time.time() + 0.5))
                if self.install.current() != version:
                    continue  # rolled back: start the previous version now
            if code is None:
                code = self._wait(child)
            if code is None:  # stopping
                self._end(child)
                break
            self._child = None
            if code == EXIT_RESTART:
                continue
            log.warning("version %s exited with %s; restarting", version, code)
            end = time.monotonic() + RESTART_DELAY_S
            while not self._stopping and time.monotonic() < end:
                time.sleep(_POLL_S)
        return 0


def supervise(root: str | Path, agent_args: list[str]) -> int:
    """Entry point of ``printermaster agent supervise``: until SIGTERM/SIGINT."""
    supervisor = Supervisor(root, agent_args)
    if sys.platform != "win32":
        signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    return supervisor.run()
