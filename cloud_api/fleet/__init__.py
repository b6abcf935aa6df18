"""The fleet summary: counts per branch over every branch the caller may see."""

from ._controller import FleetController
from ._summary import BranchSummary, FleetSummary, PrinterCounts, summarize

__all__ = ["BranchSummary", "FleetController", "FleetSummary", "PrinterCounts", "summarize"]
