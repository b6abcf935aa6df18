"""The printer config union decodes every kind and open_backend builds the matching backend."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from branch_agent._printers import PrinterConfig, open_backend

CONFIG = b"""
[[printers]]
kind = "network"
name = "POS-80C"
host = "192.168.1.50"
timeout = 3.5

[[printers]]
kind = "file"
name = "LP0"
device = "/dev/usb/lp0"

[[printers]]
kind = "virtual"
name = "DEMO"
"""


def test_every_kind_decodes_and_opens(tmp_path: Path) -> None:
    printers = msgspec.toml.decode(CONFIG, type=dict[str, list[PrinterConfig]])["printers"]
    backends = [open_backend(p, tmp_path) for p in printers]
    assert [(b.kind, b.name) for b in backends] == [
        ("network", "POS-80C"),
        ("file", "LP0"),
        ("virtual", "DEMO"),
    ]
    assert backends[0].timeout == 3.5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "snippet",
    [
        b'kind = "network"\nname = "X"\n',  # host is required
        b'kind = "network"\nname = "X"\nhost = "h"\nbaud = 9600\n',  # unknown field
        b'kind = "parallel"\nname = "X"\n',  # unknown kind
    ],
)
def test_invalid_printer_config_is_rejected(snippet: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.toml.decode(b"[[printers]]\n" + snippet, type=dict[str, list[PrinterConfig]])
