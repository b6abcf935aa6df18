"""Agents and their printers as the presence registry sees them."""

from ._controller import AgentsController

__all__ = ["AgentsController"]
