"""Which paho-mqtt and aiomqtt releases the fast paths were written against.

Every fast path (:mod:`._fastprops`, :mod:`._fastpaths`) reaches into code the libraries do not
promise to keep. Each asks its library's guard first: on a release it was checked against, the
fast path runs; on any other, the plain public path runs instead and one warning says so (per
library and process). ``tests/test_mqtt_adapter_canaries.py`` states what each fast path relies
on and fails when an upgrade changes it: widen :data:`KNOWN` only when those canaries pass.
"""

from __future__ import annotations

import importlib
import logging
from importlib import metadata
from typing import Final

log = logging.getLogger("mqtt_adapter")

#: Distribution -> release prefixes (``major.minor.``) the fast paths were checked against.
KNOWN: Final[dict[str, tuple[str, ...]]] = {"paho-mqtt": ("2.2.",), "aiomqtt": ("2.5.",)}


class VersionGuard:
    """``ok()``: is the installed release of ``distribution`` one the fast paths know?"""

    def __init__(self, distribution: str, module: str) -> None:
        self.distribution = distribution
        self.module = module
        self.installed: str | None = None
        self._ok: bool | None = None

    def ok(self) -> bool:
        known = self._ok
        if known is None:
            known = self._ok = self._check()
        return known

    def reset(self, installed: str | None = None) -> None:
        """Check again on the next :meth:`ok` (``installed``: pretend this release is)."""
        self.installed = installed
        self._ok = None

    def _check(self) -> bool:
        if self.installed is None:
            self.installed = self._installed()
        prefixes = KNOWN[self.distribution]
        if self.installed.startswith(prefixes):
            return True
        log.warning(
            "%s %s is not a release the MQTT fast paths were checked against (%s): "
            "using its plain public API instead (slower, same behaviour)",
            self.distribution,
            self.installed,
            ", ".join(f"{p}x" for p in prefixes),
        )
        return False

    def _installed(self) -> str:
        # the module's own __version__ first: a single-file agent (PyInstaller) carries the
        # modules but not their distribution metadata
        version = getattr(importlib.import_module(self.module), "__version__", None)
        if isinstance(version, str):
            return version
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return "unknown"


PAHO: Final = VersionGuard("paho-mqtt", "paho.mqtt")
AIOMQTT: Final = VersionGuard("aiomqtt", "aiomqtt")
