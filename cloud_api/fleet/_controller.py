"""``GET /v1/fleet``: who is online and which printers can print, over all visible branches."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import Parameter

from .._auth import principal_of
from .._registry import Registry
from ._summary import FleetSummary, summarize


class FleetController(Controller):
    path = "/v1/fleet"
    tags = ["fleet"]

    @get("/", summary="Counts of agents and printers, per branch and in total")
    async def fleet(
        self,
        request: Request[Any, Any, Any],
        registry: Registry,
        problems_only: bool = False,
        after: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 500,
    ) -> FleetSummary:
        """Totals cover every branch the caller may see; ``branches`` is one page of them
        (``limit``, continue with ``after=next_after``), or only the branches with an offline
        agent or a printer that is not ready when ``problems_only=true``."""
        principal = principal_of(request)
        return summarize(
            registry,
            may_see=principal.may_see,
            problems_only=problems_only,
            after=after,
            limit=limit,
        )
