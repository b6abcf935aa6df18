"""Broker errors.

Exception tree::

    BrokerError
    └── DynSecError   the dynamic-security plugin refused a command
"""


class BrokerError(Exception):
    """Root of every error raised by :mod:`broker`."""
