"""Shared fixtures: a fake ESC/POS network printer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops.fake_printer import FakePrinter


@pytest.fixture
def fake_printer() -> Iterator[FakePrinter]:
    with FakePrinter() as printer:
        yield printer
