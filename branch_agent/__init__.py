"""The branch agent: one outbound MQTT 5 session, printers driven locally.

Its configuration (schema, checks, file location) is :mod:`agent_config`'s, named here too.
"""

from agent_config import AgentConfig, MqttSettings, load_config, parse_config

from ._agent import Agent
from ._cli import add_commands, add_config_arg
from ._errors import AgentError, ConfigError
from ._printers import PrinterBackend, PrinterError, PrinterReading, VirtualPrinter
from ._service import run_service
from ._supervisor import InstallError, InstallRoot, supervise

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentError",
    "ConfigError",
    "InstallError",
    "InstallRoot",
    "MqttSettings",
    "PrinterBackend",
    "PrinterError",
    "PrinterReading",
    "VirtualPrinter",
    "add_commands",
    "add_config_arg",
    "load_config",
    "parse_config",
    "run_service",
    "supervise",
]
