"""The console's static files and the API reference pages, all served by the API itself.

Nothing loads from another host: the console is plain ES modules and one CSS file (no build
step, nothing to vendor), and the Swagger UI and ReDoc bundles are vendored from npm at pinned
versions (``static/vendor/README.md``). The files are public; every data call the console makes
carries the API key.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Final

from litestar import Router, get
from litestar.datastructures import ResponseHeader
from litestar.file_system import BaseLocalFileSystem
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.response.file import ASGIFileResponse
from litestar.static_files import StaticFiles

STATIC_DIR: Final = Path(__file__).with_name("static")
CONSOLE_PATH: Final = "/console"

_SWAGGER: Final = f"{CONSOLE_PATH}/vendor/swagger-ui-dist-5.35.0"
_REDOC: Final = f"{CONSOLE_PATH}/vendor/redoc-2.5.0"
_FAVICON: Final = f"<link rel='icon' type='image/svg+xml' href='{CONSOLE_PATH}/favicon.svg'>"

#: The reference pages load nothing from another host, even where a vendored bundle would
#: (ReDoc's sidebar shows a logo from its makers' CDN; refused, it hides itself). Inline
#: scripts and styles: the pages start their bundles with one, and ReDoc styles inline.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'self'; base-uri 'self'; form-action 'self'"
)
#: The console holds an API key in the tab: no inline script or style at all, so nothing
#: injected into a page could run.
CONSOLE_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
_HEADERS: Final = [ResponseHeader(name="Content-Security-Policy", value=CONTENT_SECURITY_POLICY)]


def console_router() -> Router:
    """``/console``: the single-page console (``index.html``) and its modules and styles.

    Litestar's static files router without its factory, which cannot add headers: file
    responses bypass a router's ``response_headers``."""
    files = StaticFiles(
        is_html_mode=True,
        directories=[STATIC_DIR],
        file_system=BaseLocalFileSystem(),
        # Revalidated on every load (a few small files): a new release shows at once.
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": CONSOLE_SECURITY_POLICY},
    )

    @get("/", name="console/index", include_in_schema=False)
    async def index() -> ASGIFileResponse:
        return await files.handle(path="/", is_head_response=False)

    @get("/{file_path:path}", name="console", include_in_schema=False)
    async def asset(file_path: PurePath) -> ASGIFileResponse:
        return await files.handle(path=file_path.as_posix(), is_head_response=False)

    return Router(path=CONSOLE_PATH, route_handlers=[index, asset])


def openapi_config(title: str, version: str) -> OpenAPIConfig:
    """``/schema`` (ReDoc), ``/schema/redoc``, ``/schema/swagger`` and ``/schema/openapi.json``,
    with the pages' scripts, styles and icon served from ``/console/vendor``."""
    return OpenAPIConfig(
        title=title,
        version=version,
        # Swagger UI's "Authorize" then sends the key as a bearer token with "Try it out".
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An API key (pmk_...) or the operator's token",
                )
            }
        ),
        security=[{"bearer": []}],
        openapi_router=Router(path="/schema", route_handlers=[], response_headers=_HEADERS),
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
