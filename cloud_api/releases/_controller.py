"""``/v1/releases`` and ``/v1/branches/{b}/release-pin`` (admin token only)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post, put

from protocol import BranchPin, ReleaseManifest

from .._auth import principal_of, require_admin
from ._service import PinBody, ReleaseBody, ReleaseService, RolloutBody


class ReleasesController(Controller):
    path = "/v1"
    tags = ["releases"]

    @post("/releases", status_code=201, summary="Publish a signed release on its channel")
    async def publish(
        self, request: Request[Any, Any, Any], data: ReleaseBody, release_service: ReleaseService
    ) -> ReleaseManifest:
        require_admin(principal_of(request))
        return await release_service.publish(data)

    @get("/releases/{channel:str}", summary="The release a channel publishes")
    async def current(
        self, request: Request[Any, Any, Any], channel: str, release_service: ReleaseService
    ) -> ReleaseManifest:
        require_admin(principal_of(request))
        return await release_service.current(channel)

    @put("/releases/{channel:str}/rollout", summary="Widen or narrow a staged rollout")
    async def rollout(
        self,
        request: Request[Any, Any, Any],
        channel: str,
        data: RolloutBody,
        release_service: ReleaseService,
    ) -> ReleaseManifest:
        require_admin(principal_of(request))
        return await release_service.set_rollout(channel, data.rollout_percent)

    @put("/branches/{branch_id:str}/release-pin", summary="Pin a branch to a release")
    async def pin(
        self,
        request: Request[Any, Any, Any],
        branch_id: str,
        data: PinBody,
        release_service: ReleaseService,
    ) -> BranchPin:
        require_admin(principal_of(request))
        return await release_service.pin(branch_id, data)

    @delete("/branches/{branch_id:str}/release-pin", summary="Let a branch follow its channel")
    async def unpin(
        self, request: Request[Any, Any, Any], branch_id: str, release_service: ReleaseService
    ) -> None:
        require_admin(principal_of(request))
        await release_service.unpin(branch_id)
