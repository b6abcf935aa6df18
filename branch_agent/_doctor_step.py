"""A doctor step's verdict: one line, ``OK``, ``FAIL`` plus the fix to try, or ``SKIP``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["OK", "FAIL", "SKIP"]


@dataclass(frozen=True)
class Step:
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        head = f"[{self.verdict}]".ljust(7) + f"{self.name}: {self.detail}"
        return [head, f"       fix: {self.fix}"] if self.fix else [head]


def ok(name: str, detail: str) -> Step:
    return Step(name, "OK", detail)


def fail(name: str, detail: str, fix: str) -> Step:
    return Step(name, "FAIL", detail, fix)


def skip(name: str, detail: str) -> Step:
    return Step(name, "SKIP", detail)
