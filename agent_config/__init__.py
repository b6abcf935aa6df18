"""The agent's configuration: the TOML schema, its checks, and where the file lives.

One contract between two sides, as :mod:`protocol` is for the wire: the cloud renders and checks
a new agent's TOML and the printer lists it sends (provisioning, remote configuration); the
agent reads the same types at start. No printer library, no agent runtime: importing it costs
the cloud nothing.
"""

from ._errors import ConfigError
from ._load import dump_config, load_config, load_public_key, parse_config
from ._printers import (
    CupsPrinterConfig,
    FilePrinterConfig,
    NetworkPrinterConfig,
    PrinterConfig,
    SerialPrinterConfig,
    UsbPrinterConfig,
    VirtualPrinterConfig,
    Win32PrinterConfig,
    parse_printers,
)
from ._schema import (
    AgentConfig,
    BrokerAddress,
    DiscoverySettings,
    MqttSettings,
    UpdateSettings,
    default_config_path,
    default_data_dir,
)

__all__ = [
    "AgentConfig",
    "BrokerAddress",
    "ConfigError",
    "CupsPrinterConfig",
    "DiscoverySettings",
    "FilePrinterConfig",
    "MqttSettings",
    "NetworkPrinterConfig",
    "PrinterConfig",
    "SerialPrinterConfig",
    "UpdateSettings",
    "UsbPrinterConfig",
    "VirtualPrinterConfig",
    "Win32PrinterConfig",
    "default_config_path",
    "default_data_dir",
    "dump_config",
    "load_config",
    "load_public_key",
    "parse_config",
    "parse_printers",
]
