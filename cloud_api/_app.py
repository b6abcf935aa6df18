"""The Litestar application: routes, dependencies, lifespan (store, MQTT session, job sweeper,
retention), error handling, access log and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from protocol import software_version

from ._auth import Authenticator, authenticated
from ._correlator import Correlator
from ._errors import error_response
from ._health import Readiness, healthz, readyz
from ._metrics import Metrics, metrics_endpoint
from ._mqtt import MqttLink
from ._observe import JobObserver, access_logged, instrument_store
from ._registry import Registry
from ._retention import run_retention
from ._settings import ApiSettings
from .agents import AgentsController
from .apikeys import ApiKeysController, ApiKeyService, JsonFileApiKeyStore, MemoryApiKeyStore
from .fleet import FleetController
from .jobs import JobsController, JobService
from .printers import PrintersController
from .provisioning import ProvisioningController, ProvisioningService
from .store import Store, open_store

log = logging.getLogger("cloud_api")


def create_app(settings: ApiSettings, *, startup_wait: float = 10.0) -> Litestar:
    """Build the app; the store, the MQTT session and the job sweeper start with its lifespan."""
    correlator = Correlator()
    registry = Registry()
    link = MqttLink(settings, registry, on_reply=lambda *args: None)
    readiness = Readiness()
    readiness.add("broker", link.check)
    metrics = Metrics(registry, link)
    holder: dict[str, JobService] = {}
    provisioning_service = ProvisioningService(settings)
    key_store = (
        JsonFileApiKeyStore(settings.api_keys_file)
        if settings.api_keys_file
        else MemoryApiKeyStore()
    )
    api_key_service = ApiKeyService(key_store)
    authenticator = Authenticator(settings.api_token, api_key_service)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store: Store = instrument_store(await open_store(settings.store_url), metrics)

        async def store_check() -> tuple[bool, str]:
            await store.ping()
            return True, store.name

        readiness.add("store", store_check)
        jobs = holder["jobs"] = JobService(settings, store, link, registry, correlator)
        jobs.observer = JobObserver(metrics)
        link.on_reply = jobs.on_reply
        mqtt_task = asyncio.create_task(link.run(), name="mqtt-link")
        jobs_task = asyncio.create_task(jobs.run(), name="job-sweeper")
        retention_task = asyncio.create_task(
            run_retention(store, settings, metrics), name="job-retention"
        )
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
            for task in (retention_task, jobs_task, mqtt_task):
                task.cancel()
            await asyncio.gather(retention_task, jobs_task, mqtt_task, return_exceptions=True)
            await jobs.aclose()
            await store.close()

    dependencies = {
        "mqtt_link": Provide(lambda: link, use_cache=True, sync_to_thread=False),
        "registry": Provide(lambda: registry, use_cache=True, sync_to_thread=False),
        "job_service": Provide(lambda: holder["jobs"], sync_to_thread=False),
        "readiness": Provide(lambda: readiness, use_cache=True, sync_to_thread=False),
        "metrics": Provide(lambda: metrics, use_cache=True, sync_to_thread=False),
        "provisioning_service": Provide(
            lambda: provisioning_service, use_cache=True, sync_to_thread=False
        ),
        "api_key_service": Provide(lambda: api_key_service, use_cache=True, sync_to_thread=False),
    }
    v1 = Router(
        path="/",
        route_handlers=[
            PrintersController,
            AgentsController,
            FleetController,
            JobsController,
            ProvisioningController,
            ApiKeysController,
        ],
        middleware=[authenticated(authenticator)],
    )
    app = Litestar(
        route_handlers=[healthz, readyz, metrics_endpoint, v1],
        dependencies=dependencies,
        lifespan=[lifespan],
        exception_handlers={Exception: error_response},
        openapi_config=OpenAPIConfig(title="PrinterMaster API", version=software_version()),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
        # logging is configured once per process (protocol.configure_logging), not by Litestar
        logging_config=None,
    )
    app.state.settings = settings
    # outermost: the access log sees every response, 404s and errors of the middleware too
    app.asgi_handler = access_logged(app.asgi_handler, metrics)
    return app
