"""The branch agent: one outbound MQTT 5 session, printers driven locally."""

from ._agent import Agent
from ._config import AgentConfig, MqttSettings, load_config, parse_config
from ._errors import AgentError, ConfigError
from ._printers import PrinterBackend, PrinterError, PrinterReading, VirtualPrinter

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentError",
    "ConfigError",
    "MqttSettings",
    "PrinterBackend",
    "PrinterError",
    "PrinterReading",
    "VirtualPrinter",
    "load_config",
    "parse_config",
]
