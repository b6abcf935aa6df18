"""The operations console at ``/console`` and the read-only endpoints behind it.

* ``GET /v1/console/branches``: a searchable page of branches with agents and printers.
* ``GET /v1/jobs/search``: jobs by branch, printer, state and kind.
* ``GET /v1/events``: the live event feed (Server-Sent Events).
* the API reference pages (``/schema``...) with their assets served locally.
"""

from ._branches import BranchDetail, BranchPage, ConsoleBranchesController, branch_page
from ._feed import EventFeed, FeedEvent
from ._feed_controller import EventFeedController
from ._search import JobSearchController, JobSearchPage, search_jobs
from ._static import STATIC_DIR, console_router, openapi_config

__all__ = [
    "STATIC_DIR",
    "BranchDetail",
    "BranchPage",
    "ConsoleBranchesController",
    "EventFeed",
    "EventFeedController",
    "FeedEvent",
    "JobSearchController",
    "JobSearchPage",
    "branch_page",
    "console_router",
    "openapi_config",
    "search_jobs",
]
