"""Serve the API with uvicorn (uvloop + httptools where available)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from ._app import create_app
from ._settings import ApiSettings


def serve(settings: ApiSettings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    fast = sys.platform != "win32"
    config = uvicorn.Config(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop" if fast else "asyncio",
        http="httptools" if fast else "h11",
        lifespan="on",
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
        # longer than a load balancer's idle timeout (60 s on most), so the balancer closes an
        # idle keep-alive connection first and never sends into one we are closing
        timeout_keep_alive=75,
    )
    uvicorn.Server(config).run()
