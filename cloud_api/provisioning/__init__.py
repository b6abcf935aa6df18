"""Provisioning of agent and debug logins through the broker's dynamic-security plugin."""

from ._controller import ProvisioningController
from ._render import AgentPlatform, BrokerEndpoint, render_agent_config
from ._service import DebugLogin, ProvisioningService

__all__ = [
    "AgentPlatform",
    "BrokerEndpoint",
    "DebugLogin",
    "ProvisioningController",
    "ProvisioningService",
    "render_agent_config",
]
