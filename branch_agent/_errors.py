"""Agent errors.

Exception tree::

    AgentError
    └── ConfigError    the configuration file is missing, unreadable or invalid

Printer failures are :class:`branch_agent.PrinterError` (with a typed :class:`protocol.ErrorCode`);
they are reported to the cloud, never raised out of the agent.
"""


class AgentError(Exception):
    """Root of every error raised by :mod:`branch_agent`."""


class ConfigError(AgentError):
    """The agent configuration is invalid; the message names the key."""
