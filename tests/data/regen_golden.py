"""Regenerate ``sample_receipt.bin`` from ``sample_receipt.json``, and show what it holds.

Run from the repository root::

    PYTHONPATH=. python tests/data/regen_golden.py          # rewrite the .bin, print its commands
    PYTHONPATH=. python tests/data/regen_golden.py --dump   # only print the commands

Review the printed commands before committing a new golden file: the test compares against it
byte for byte, so whatever is committed is what every printer will get.
"""

from __future__ import annotations

import sys
from pathlib import Path

from branch_agent._render import render_content
from protocol import decode_content
from tests.escpos_dump import disassemble

HERE = Path(__file__).parent


def main() -> None:
    content = decode_content((HERE / "sample_receipt.json").read_bytes())
    data = render_content(content)
    if "--dump" not in sys.argv:
        (HERE / "sample_receipt.bin").write_bytes(data)
    for line in disassemble(data):
        print(line)
    print(f"{len(data)} bytes")


if __name__ == "__main__":
    main()
