"""The ``printermaster`` command and the local stack (broker + API + agents) it runs.

The stack is :mod:`printermaster.stack`, kept apart so the command (and the single-file agent)
does not load it.
"""

from ._cli import agent_main, build_parser, main

__all__ = ["agent_main", "build_parser", "main"]
