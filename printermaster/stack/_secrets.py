"""The stack's secrets: broker logins and the API token, kept in ``secrets.json`` (0600)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Self

from broker import Credentials, new_password


class StackSecrets:
    """Logins by name (``admin``, ``cloud``, ``debug``, ``debug:{branch}:{name}``) and the API
    token; made once, then read back, so a stack restarted on its state directory keeps them."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self._data = data

    @classmethod
    def load_or_create(cls, path: Path) -> Self:
        if path.exists():
            return cls(path, dict(json.loads(path.read_text())))
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "admin": {"username": "admin", "password": new_password()},
            "cloud": {"username": "cloud", "password": new_password()},
            "debug": {"username": "debug", "password": new_password()},
            "api_token": "pm_" + secrets.token_urlsafe(24),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
        return cls(path, data)

    def has(self, name: str) -> bool:
        return name in self._data

    def creds(self, name: str) -> Credentials:
        return Credentials(**self._data[name])

    @property
    def api_token(self) -> str:
        return str(self._data["api_token"])

    def add(self, name: str, creds: Credentials) -> None:
        """Keep one more login, written to the file at once (atomically)."""
        self._data[name] = {"username": creds.username, "password": creds.password}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self._data, fh, indent=2)
        os.replace(tmp, self.path)
