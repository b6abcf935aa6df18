"""Playwright on Debian's Chromium for the console tests (never a downloaded browser)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, expect, sync_playwright

#: Debian's package (``ops/bootstrap.sh`` installs it).
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")

DOCS = Path(__file__).resolve().parent.parent / "docs"

# Each expectation polls until it holds; on a loaded machine (CI, a shared box) a stage or a
# refresh may take longer than Playwright's default 5 s.
expect.set_options(timeout=20_000)


@contextmanager
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        raise RuntimeError("Chromium is missing: run ops/bootstrap.sh (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()
