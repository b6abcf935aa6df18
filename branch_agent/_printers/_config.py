"""Printer configuration: a tagged union on ``kind``, and the backend factory."""

from __future__ import annotations

from pathlib import Path

import msgspec

from ._base import PrinterBackend


class _PrinterConfigBase(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, tag_field="kind"
):
    #: Printer id as the cloud addresses it (``POS-80C``).
    name: str


class VirtualPrinterConfig(_PrinterConfigBase, kw_only=True, frozen=True, tag="virtual"):
    """Stores each job's bytes in ``directory`` (default: ``{data_dir}/virtual/{name}``)."""

    directory: str | None = None


PrinterConfig = VirtualPrinterConfig


def open_backend(config: PrinterConfig, data_dir: Path) -> PrinterBackend:
    """Build the backend for one configured printer."""
    from ._virtual import VirtualPrinter

    match config:
        case VirtualPrinterConfig():
            directory = (
                Path(config.directory) if config.directory else data_dir / "virtual" / config.name
            )
            return VirtualPrinter(config.name, directory)
    raise TypeError(f"unsupported printer config {config!r}")
