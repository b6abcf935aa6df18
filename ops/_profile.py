"""Sampling profiles of the API and the simulated agents under load, with py-spy.

``--profile`` records each process for the measured window into ``profile-<name>.txt``
(py-spy's collapsed stacks, one line per distinct stack with its sample count; open it in
speedscope or flamegraph.pl) and summarises where the samples fall: the functions with the most
samples on top of the stack (self) and anywhere on it (inclusive).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any


class ProfileError(Exception):
    """py-spy is missing or may not attach (needs ptrace: run as root or set ptrace_scope)."""


def find_py_spy() -> str:
    path = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(path).exists():
        raise ProfileError("py-spy not found: pip install py-spy")
    return path


async def record(pid: int, seconds: float, out: Path, rate: int = 200) -> None:
    """Sample ``pid`` for ``seconds`` (idle threads left out) into collapsed stacks."""
    proc = await asyncio.create_subprocess_exec(
        find_py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise ProfileError(f"py-spy on pid {pid} failed: {err.decode(errors='replace')[-500:]}")


def summarise(path: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function (``name (file)``, line numbers dropped)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with contextlib.suppress(FileNotFoundError), path.open() as fh:
        for line in fh:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = [_frame(f) for f in stack.split(";")[1:]]  # first entry: the thread
            if frames:
                own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(n / total * 100, 1)] for name, n in counter.most_common(top)]

    return {"samples": total, "self_percent": share(own), "inclusive_percent": share(inclusive)}


def _frame(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 2)
    return f"{name} ({'/'.join(file[-2:])})" if where else name
