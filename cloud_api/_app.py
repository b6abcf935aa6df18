"""The Litestar application: routes, dependencies, lifespan (store, MQTT session, job sweeper),
error handling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar, Router
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from protocol import software_version

from ._auth import Authenticator, authenticated
from ._correlator import Correlator
from ._errors import error_response
from ._health import Readiness, healthz, readyz
from ._metrics import Metrics, metrics_endpoint
from ._mqtt import MqttLink
from ._openapi import complete_openapi
from ._owners import OwnerBook
from ._ratelimit import RateLimiter, bound_logs, rate_limited
from ._registry import Registry
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
    # what arrives over MQTT is logged a bounded number of lines, whatever an agent sends
    # (and so are refused HTTP request heads)
    bound_logs(
        "cloud_api.mqtt", "cloud_api.registry", "cloud_api.rpc", "cloud_api.jobs", "cloud_api.http"
    )
    registry = Registry()
    owners = OwnerBook(registry)
    link = MqttLink(settings, registry, on_reply=lambda *args: None)
    readiness = Readiness()
    readiness.add("broker", link.check)
    metrics = Metrics(registry, link)
    holder: dict[str, JobService] = {}
    provisioning_service = ProvisioningService(settings, owners)
    key_store = (
        JsonFileApiKeyStore(settings.api_keys_file)
        if settings.api_keys_file
        else MemoryApiKeyStore()
    )
    api_key_service = ApiKeyService(key_store)
    authenticator = Authenticator(settings.api_token, api_key_service)
    per_key = RateLimiter(
        settings.rate_limit_per_key, settings.rate_limit_key_burst, what="API key"
    )
    per_printer = RateLimiter(
        settings.rate_limit_per_printer, settings.rate_limit_printer_burst, what="printer"
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store: Store = await open_store(settings.store_url)
        # Every known printer before the first broker message: a restart while the broker is
        # away still knows them (503 BROKER_UNAVAILABLE, jobs stored queued, not 404).
        await owners.open(store)

        async def store_check() -> tuple[bool, str]:
            await store.ping()
            return True, store.name

        readiness.add("store", store_check)
        jobs = holder["jobs"] = JobService(settings, store, link, registry, correlator)
        jobs.admit = per_printer.check
        link.on_reply = jobs.on_reply
        mqtt_task = asyncio.create_task(link.run(), name="mqtt-link")
        jobs_task = asyncio.create_task(jobs.run(), name="job-sweeper")
        owners_task = asyncio.create_task(owners.run(), name="printer-owners")
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
            for task in (jobs_task, mqtt_task, owners_task):
                task.cancel()
            await asyncio.gather(jobs_task, mqtt_task, owners_task, return_exceptions=True)
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
        middleware=[authenticated(authenticator), rate_limited(per_key)],
    )
    app = Litestar(
        route_handlers=[healthz, readyz, metrics_endpoint, v1],
        dependencies=dependencies,
        lifespan=[lifespan],
        exception_handlers={Exception: error_response},
        openapi_config=OpenAPIConfig(title="PrinterMaster API", version=software_version()),
        request_max_body_size=settings.max_body_bytes,
        # nothing the API answers may sit in a cache: keys, agent configs, debug passwords,
        # job contents (Cache-Control: no-store on every route's response)
        cache_control=CacheControlHeader(no_store=True),
        debug=False,
    )
    app.state.settings = settings
    complete_openapi(app.openapi_schema)  # built once here, served as completed
    return app
