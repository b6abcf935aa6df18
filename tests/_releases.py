"""Test helpers for signed updates: minimal wheels of this checkout with any version, and an
HTTPS file server on 127.0.0.1 with a CA of its own."""

from __future__ import annotations

import http.server
import ssl
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from broker import free_port
from broker._tls import ensure_tls_material

ROOT = Path(__file__).resolve().parent.parent


def _packages() -> tuple[str, ...]:
    """The wheel's top-level packages, as pyproject.toml lists them (one list to keep)."""
    with (ROOT / "pyproject.toml").open("rb") as fh:
        include = tomllib.load(fh)["tool"]["setuptools"]["packages"]["find"]["include"]
    return tuple(pattern.rstrip("*") for pattern in include)


PACKAGES = _packages()


def build_wheel(out: Path, version: str, *, broken: bool = False) -> Path:
    """A wheel of this checkout's packages that says it is ``version`` (a pure-Python wheel is
    a zip: no build backend needed). ``broken``: its ``printermaster`` exits at once, so the
    version never comes online."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"printermaster-{version}-py3-none-any.whl"
    dist = f"printermaster-{version}.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in PACKAGES:
            for file in sorted((ROOT / package).rglob("*.py")):
                name = file.relative_to(ROOT).as_posix()
                if broken and name == "printermaster/__main__.py":
                    zf.writestr(name, "raise SystemExit('this release is broken on purpose')\n")
                else:
                    zf.write(file, name)
        zf.writestr(
            f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: printermaster\nVersion: {version}\n"
        )
        zf.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{dist}/RECORD", "")
    return path


@dataclass
class HttpsServer:
    url: str
    ca_file: Path
    directory: Path


@contextmanager
def https_server(directory: Path, tls_dir: Path) -> Iterator[HttpsServer]:
    """Serve ``directory`` over HTTPS on 127.0.0.1 (a free port) until the block ends."""
    material = ensure_tls_material(tls_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(material.server_cert, material.server_key)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="https", daemon=True)
    thread.start()
    try:
        yield HttpsServer(f"https://127.0.0.1:{port}", material.ca_cert, directory)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
