"""The Litestar application: routes, dependencies, lifespan (store, MQTT session, job sweeper,
retention), error handling, access log and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, Router
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide

from protocol import software_version

from ._auth import Authenticator, authenticated
from ._brokers import BrokerLinks
from ._errors import error_response
from ._health import Readiness, healthz, readyz
from ._metrics import Metrics, metrics_endpoint
from ._mqtt import MqttLink
from ._observe import JobObserver, access_logged, instrument_store
from ._openapi import complete_openapi
from ._owners import OwnerBook
from ._ratelimit import RateLimiter, bound_logs, rate_limited
from ._registry import Registry
from ._retention import run_retention
from ._settings import ApiSettings
from .agents import AgentsController
from .apikeys import ApiKeysController, ApiKeyService, MemoryApiKeyStore, import_key_file
from .console import (
    ConsoleBranchesController,
    EventFeed,
    EventFeedController,
    JobSearchController,
    console_router,
    openapi_config,
)
from .fleet import FleetController
from .instances import InstanceLeases, InstancesController
from .jobs import JobsController, JobService
from .printers import AgentPrintersController, PrinterConfigService, PrintersController
from .provisioning import ProvisioningController, ProvisioningService
from .releases import ReleasesController, ReleaseService
from .store import Store, open_store

log = logging.getLogger("cloud_api")


def create_app(settings: ApiSettings, *, startup_wait: float = 10.0) -> Litestar:
    """Build the app; the store, the MQTT session and the job sweeper start with its lifespan."""
    # what arrives over MQTT is logged a bounded number of lines, whatever an agent sends
    # (and so are refused HTTP request heads)
    bound_logs("cloud_api.mqtt", "cloud_api.registry", "cloud_api.jobs", "cloud_api.http")
    registry = Registry()
    owners = OwnerBook(registry)
    several = len(settings.mqtt.endpoints()) > 1
    link = (BrokerLinks if several else MqttLink)(settings, registry, lambda *args: None)
    readiness = Readiness()
    readiness.add("broker", link.check)
    metrics = Metrics(registry, link)
    event_feed = EventFeed(registry)
    holder: dict[str, Any] = {}
    fleet: dict[str, PrinterConfigService | ReleaseService] = {}
    provisioning_service = ProvisioningService(settings, owners)
    # the database-backed key store replaces this one when the lifespan opens the store, before
    # the first request is served
    api_key_service = ApiKeyService(MemoryApiKeyStore())
    authenticator = Authenticator(settings.api_token, api_key_service)
    per_key = RateLimiter(
        settings.rate_limit_per_key, settings.rate_limit_key_burst, what="API key"
    )
    per_printer = RateLimiter(
        settings.rate_limit_per_printer, settings.rate_limit_printer_burst, what="printer"
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store: Store = instrument_store(await open_store(settings.store_url), metrics)
        # Every known printer before the first broker message: a restart while the broker is
        # away still knows them (503 BROKER_UNAVAILABLE, jobs stored queued, not 404).
        await owners.open(store)

        async def store_check() -> tuple[bool, str]:
            await store.ping()
            return True, store.name

        readiness.add("store", store_check)
        api_key_service.store = await import_key_file(store, settings.api_keys_file)
        jobs = holder["jobs"] = JobService(settings, store, link, registry)
        jobs.admit = per_printer.check
        jobs.observer = JobObserver(metrics)
        link.on_reply = jobs.on_reply
        jobs.flights.listeners.append(event_feed.on_job)
        brokers = link.pairs() if isinstance(link, BrokerLinks) else [(settings.mqtt, link)]
        instances = holder["instances"] = InstanceLeases(settings, store, brokers, jobs.adopt)
        readiness.add("lease", instances.check)
        fleet["printers"] = PrinterConfigService(store, settings, registry)
        fleet["releases"] = ReleaseService(store, settings, settings.release_public_key)
        mqtt_task = asyncio.create_task(link.run(), name="mqtt-link")
        jobs_task = asyncio.create_task(jobs.run(), name="job-sweeper")
        lease_task = asyncio.create_task(instances.run(), name="instance-lease")
        owners_task = asyncio.create_task(owners.run(), name="printer-owners")
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
            await event_feed.aclose()
            tasks = (retention_task, lease_task, jobs_task, mqtt_task, owners_task)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await instances.release()
            await jobs.aclose()
            await store.close()

    dependencies = {
        "mqtt_link": Provide(lambda: link, use_cache=True, sync_to_thread=False),
        "registry": Provide(lambda: registry, use_cache=True, sync_to_thread=False),
        "job_service": Provide(lambda: holder["jobs"], sync_to_thread=False),
        "instance_leases": Provide(lambda: holder["instances"], sync_to_thread=False),
        "readiness": Provide(lambda: readiness, use_cache=True, sync_to_thread=False),
        "metrics": Provide(lambda: metrics, use_cache=True, sync_to_thread=False),
        "provisioning_service": Provide(
            lambda: provisioning_service, use_cache=True, sync_to_thread=False
        ),
        "api_key_service": Provide(lambda: api_key_service, use_cache=True, sync_to_thread=False),
        "event_feed": Provide(lambda: event_feed, use_cache=True, sync_to_thread=False),
        "printer_config_service": Provide(lambda: fleet["printers"], sync_to_thread=False),
        "release_service": Provide(lambda: fleet["releases"], sync_to_thread=False),
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
            ConsoleBranchesController,
            JobSearchController,
            EventFeedController,
            InstancesController,
            AgentPrintersController,
            ReleasesController,
        ],
        middleware=[authenticated(authenticator), rate_limited(per_key)],
    )
    app = Litestar(
        route_handlers=[healthz, readyz, metrics_endpoint, v1, console_router()],
        dependencies=dependencies,
        lifespan=[lifespan],
        exception_handlers={Exception: error_response},
        openapi_config=openapi_config("PrinterMaster API", software_version()),
        request_max_body_size=settings.max_body_bytes,
        # nothing the API answers may sit in a cache: keys, agent configs, debug passwords,
        # job contents (Cache-Control: no-store on every route's response)
        cache_control=CacheControlHeader(no_store=True),
        debug=False,
        # logging is configured once per process (pmlog.configure_logging), not by Litestar
        logging_config=None,
    )
    app.state.settings = settings
    complete_openapi(app.openapi_schema)  # built once here, served as completed
    # outermost: the access log sees every response, 404s and errors of the middleware too
    app.asgi_handler = access_logged(app.asgi_handler, metrics)
    return app
