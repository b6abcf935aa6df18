"""The one error of :mod:`agent_config`.

Exception tree::

    ConfigError    the configuration is missing, unreadable or invalid (the message names the key)
"""


class ConfigError(Exception):
    """The agent configuration is invalid; the message names the key."""
