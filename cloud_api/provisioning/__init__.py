"""Provisioning of agent and debug logins through the broker's dynamic-security plugin."""

from ._controller import ProvisioningController
from ._render import BrokerEndpoint, render_agent_config
from ._service import DebugLogin, ProvisioningService

__all__ = [
    "BrokerEndpoint",
    "DebugLogin",
    "ProvisioningController",
    "ProvisioningService",
    "render_agent_config",
]
