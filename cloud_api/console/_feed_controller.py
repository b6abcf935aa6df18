"""``GET /v1/events``: the live event feed as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from .._auth import principal_of
from ._feed import EventFeed

#: A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_S = 15.0


class EventFeedController(Controller):
    path = "/v1/events"
    tags = ["console"]

    @get("/", summary="Server-Sent Events: job transitions, agents and printers changing")
    async def events(
        self,
        request: Request[Any, Any, Any],
        event_feed: EventFeed,
        branch_id: Annotated[str | None, Parameter(max_length=200)] = None,
    ) -> ServerSentEvent:
        """Every event of the branches the caller may see (or of ``branch_id`` only), from now
        on. The first message is ``ready`` (subscribed); then ``job``, ``agent`` and
        ``printer`` events, each a JSON object; ``lagged`` when some were dropped because the
        client read too slowly."""
        principal = principal_of(request)

        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            async with event_feed.subscribe(principal.may_see, branch_id) as subscription:
                yield ServerSentEventMessage(event="ready", data="{}")
                while True:
                    event = await subscription.next(KEEPALIVE_S)
                    if event is None:
                        return
                    if event is False:
                        yield ServerSentEventMessage(comment="keepalive")
                        continue
                    yield ServerSentEventMessage(
                        event=event.kind, data=msgspec.json.encode(event).decode()
                    )

        return ServerSentEvent(stream())
