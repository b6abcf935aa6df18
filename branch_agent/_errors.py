"""Agent errors.

Exception tree::

    AgentError         root of the agent's own errors

    ConfigError        the configuration file is missing, unreadable or invalid: the one error
                       of :mod:`agent_config` (the cloud checks the same schema), named here too

Printer failures are :class:`branch_agent.PrinterError` (with a typed :class:`protocol.ErrorCode`);
they are reported to the cloud, never raised out of the agent.
"""

from agent_config import ConfigError


class AgentError(Exception):
    """Root of the agent's own errors (a bad configuration is :class:`ConfigError`)."""


__all__ = ["AgentError", "ConfigError"]
