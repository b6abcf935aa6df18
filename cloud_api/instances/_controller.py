"""``GET /v1/instances`` (admin): the API instances of the deployment as their leases say."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, Request, get

from .._auth import principal_of, require_admin
from ._adopter import InstanceLeases


class InstanceView(msgspec.Struct, kw_only=True, frozen=True):
    instance_id: str
    #: the lease is current (renewed within ``lease_ttl``)
    alive: bool
    started_at: float
    renewed_at: float
    expires_at: float
    #: the survivor that adopted its jobs and MQTT session, once its lease expired
    adopted_by: str | None
    adopted_at: float | None
    #: the instance that answered this request
    this: bool


class InstancesController(Controller):
    path = "/v1/instances"
    tags = ["instances"]

    @get("/", summary="API instances, their leases and who adopted whom")
    async def instances(
        self, request: Request[Any, Any, Any], instance_leases: InstanceLeases
    ) -> list[InstanceView]:
        require_admin(principal_of(request))
        now = time.time()
        return [
            InstanceView(
                instance_id=lease.instance_id,
                alive=lease.alive(now),
                started_at=lease.started_at,
                renewed_at=lease.renewed_at,
                expires_at=lease.expires_at,
                adopted_by=lease.adopted_by,
                adopted_at=lease.adopted_at,
                this=lease.instance_id == instance_leases.instance_id,
            )
            for lease in await instance_leases.all()
        ]
