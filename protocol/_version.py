"""Protocol version and hard limits both sides agree on."""

from typing import Final

#: Version of the wire contract; carried as ``v`` in every payload.
PROTOCOL_VERSION: Final = 1

#: Largest MQTT payload either side accepts (the broker enforces the same limit).
MAX_PAYLOAD_BYTES: Final = 256 * 1024


def software_version() -> str:
    """Version of the installed PrinterMaster distribution."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("printermaster")
    except PackageNotFoundError:
        return "0+local"
