"""Provisioning of agent and debug logins through the broker's dynamic-security plugin."""

from ._controller import ProvisioningController
from ._render import (
    WINDOWS_DATA_DIR,
    AgentPlatform,
    BrokerEndpoint,
    is_loopback,
    render_agent_config,
)
from ._service import DebugLogin, ProvisioningService

__all__ = [
    "WINDOWS_DATA_DIR",
    "AgentPlatform",
    "BrokerEndpoint",
    "DebugLogin",
    "ProvisioningController",
    "ProvisioningService",
    "is_loopback",
    "render_agent_config",
]
