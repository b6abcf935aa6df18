"""The console's static files and the API reference pages, all served by the API itself.

Nothing loads from another host: the console is plain ES modules and one CSS file (no build
step, nothing to vendor), and the Swagger UI and ReDoc bundles are vendored from npm at pinned
versions (``static/vendor/README.md``). The files are public; every data call the console makes
carries the API key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, RedocRenderPlugin, SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

STATIC_DIR: Final = Path(__file__).with_name("static")
CONSOLE_PATH: Final = "/console"

_SWAGGER: Final = f"{CONSOLE_PATH}/vendor/swagger-ui-dist-5.35.0"
_REDOC: Final = f"{CONSOLE_PATH}/vendor/redoc-2.5.0"
_FAVICON: Final = f"<link rel='icon' type='image/svg+xml' href='{CONSOLE_PATH}/favicon.svg'>"


def console_router() -> Router:
    """``/console``: the single-page console (``index.html``) and its modules and styles."""
    return create_static_files_router(
        path=CONSOLE_PATH,
        directories=[STATIC_DIR],
        html_mode=True,
        name="console",
        # Revalidated on every load (a few small files): a new release shows at once.
        cache_control=CacheControlHeader(no_cache=True),
    )


def openapi_config(title: str, version: str) -> OpenAPIConfig:
    """``/schema`` (ReDoc), ``/schema/redoc``, ``/schema/swagger`` and ``/schema/openapi.json``,
    with the pages' scripts, styles and icon served from ``/console/vendor``."""
    return OpenAPIConfig(
        title=title,
        version=version,
        render_plugins=[
            RedocRenderPlugin(
                path=["/", "/redoc"],
                js_url=f"{_REDOC}/redoc.standalone.js",
                google_fonts=False,
                favicon=_FAVICON,
            ),
            SwaggerRenderPlugin(
                path="/swagger",
                js_url=f"{_SWAGGER}/swagger-ui-bundle.js",
                css_url=f"{_SWAGGER}/swagger-ui.css",
                standalone_preset_js_url=f"{_SWAGGER}/swagger-ui-standalone-preset.js",
                favicon=_FAVICON,
            ),
            JsonRenderPlugin(path="/openapi.json"),
        ],
    )
