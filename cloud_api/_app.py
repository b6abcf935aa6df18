"""The Litestar application: routes, dependencies, lifespan (MQTT session), error handling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import msgspec
from litestar import Litestar, Response, Router, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from protocol import software_version

from ._auth import Authenticator, require_principal
from ._correlator import Correlator
from ._errors import error_response
from ._mqtt import MqttLink
from ._registry import Registry
from ._settings import ApiSettings
from .agents import AgentsController
from .jobs import JobsController, JobService
from .printers import PrintersController
from .store import Store, open_store

log = logging.getLogger("cloud_api")


class Health(msgspec.Struct, kw_only=True, frozen=True):
    status: str
    version: str
    broker_connected: bool | None = None
    store_reachable: bool | None = None


@get("/healthz", summary="Liveness: the process serves HTTP", tags=["health"])
async def healthz() -> Health:
    return Health(status="ok", version=software_version())


@get("/readyz", summary="Readiness: connected to the broker, registry warm", tags=["health"])
async def readyz(mqtt_link: MqttLink) -> Response[Health]:
    ready = mqtt_link.ready.is_set()
    return Response(
        Health(
            status="ready" if ready else "not ready",
            version=software_version(),
            broker_connected=ready,
        ),
        status_code=200 if ready else 503,
    )


def create_app(settings: ApiSettings, *, startup_wait: float = 10.0) -> Litestar:
    """Build the app; the store, the MQTT session and the job sweeper start with its lifespan."""
    correlator = Correlator()
    registry = Registry()
    link = MqttLink(settings, registry, on_reply=lambda *args: None)
    holder: dict[str, JobService] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store: Store = await open_store(settings.store_url)
        jobs = holder["jobs"] = JobService(settings, store, link, registry, correlator)
        link.on_reply = jobs.on_reply
        mqtt_task = asyncio.create_task(link.run(), name="mqtt-link")
        jobs_task = asyncio.create_task(jobs.run(), name="job-sweeper")
        try:
            async with asyncio.timeout(startup_wait):
                await link.ready.wait()
        except TimeoutError:
            log.warning(
                "broker not reachable after %.0f s; serving, /readyz says 503", startup_wait
            )
        try:
            yield
        finally:
            for task in (jobs_task, mqtt_task):
                task.cancel()
            await asyncio.gather(jobs_task, mqtt_task, return_exceptions=True)
            await jobs.aclose()
            await store.close()

    dependencies = {
        "mqtt_link": Provide(lambda: link, use_cache=True, sync_to_thread=False),
        "registry": Provide(lambda: registry, use_cache=True, sync_to_thread=False),
        "job_service": Provide(lambda: holder["jobs"], sync_to_thread=False),
    }
    v1 = Router(
        path="/",
        route_handlers=[PrintersController, AgentsController, JobsController],
        guards=[require_principal],
    )
    app = Litestar(
        route_handlers=[healthz, readyz, v1],
        dependencies=dependencies,
        lifespan=[lifespan],
        exception_handlers={Exception: error_response},
        openapi_config=OpenAPIConfig(title="PrinterMaster API", version=software_version()),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
    )
    app.state.authenticator = Authenticator(settings.api_token)
    app.state.settings = settings
    app.state.registry = registry
    return app
