"""The Litestar application: routes, dependencies, lifespan (MQTT session), error handling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import msgspec
from litestar import Litestar, Response, get
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
from .apikeys import ApiKeysController, ApiKeyService, JsonFileApiKeyStore, MemoryApiKeyStore
from .printers import PrintersController, PrinterService
from .provisioning import ProvisioningController, ProvisioningService

log = logging.getLogger("cloud_api")


class Health(msgspec.Struct, kw_only=True, frozen=True):
    status: str
    version: str
    broker_connected: bool | None = None


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
    """Build the app; the MQTT session starts with the app's lifespan."""
    correlator = Correlator()
    registry = Registry()
    link = MqttLink(settings, correlator, registry)
    printer_service = PrinterService(settings, link, correlator, registry)
    provisioning_service = ProvisioningService(settings)
    key_store = (
        JsonFileApiKeyStore(settings.api_keys_file)
        if settings.api_keys_file
        else MemoryApiKeyStore()
    )
    api_key_service = ApiKeyService(key_store)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        task = asyncio.create_task(link.run(), name="mqtt-link")
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
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    dependencies = {
        "mqtt_link": Provide(lambda: link, use_cache=True, sync_to_thread=False),
        "registry": Provide(lambda: registry, use_cache=True, sync_to_thread=False),
        "printer_service": Provide(lambda: printer_service, use_cache=True, sync_to_thread=False),
        "provisioning_service": Provide(
            lambda: provisioning_service, use_cache=True, sync_to_thread=False
        ),
        "api_key_service": Provide(lambda: api_key_service, use_cache=True, sync_to_thread=False),
    }
    from litestar import Router

    v1 = Router(
        path="/",
        route_handlers=[
            PrintersController,
            AgentsController,
            ProvisioningController,
            ApiKeysController,
        ],
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
    app.state.authenticator = Authenticator(settings.api_token, api_key_service)
    app.state.settings = settings
    app.state.registry = registry
    app.state.correlator = correlator
    return app
