"""Every page the API serves works offline: the console and the API reference pages (ReDoc at
/schema and /schema/redoc, Swagger UI at /schema/swagger) load nothing from another host."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Route, expect

from cloud_api.console import STATIC_DIR
from printermaster.stack import Stack

from .console_browser import chromium

PAGES = ["/console", "/console/", "/schema", "/schema/redoc", "/schema/swagger"]
_ATTR = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
_CSS_URL = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])([^"')]+)""", re.IGNORECASE)


def _external(url: str) -> bool:
    """A reference that leaves the server: a scheme with a host, or protocol-relative."""
    parts = urlsplit(url)
    return bool(parts.netloc) or url.startswith("//")


def test_pages_refer_to_no_other_host(stack: Stack) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=10) as http:
        for path in PAGES:
            page = http.get(path)
            assert page.status_code == 200, path
            refs = _ATTR.findall(page.text)
            assert refs, f"{path} refers to no asset at all?"
            assert not [r for r in refs if _external(r)], (path, refs)
            for ref in refs:  # and every asset it refers to is there
                if not ref.startswith("#"):
                    assert http.get(ref).status_code == 200, (path, ref)


def test_console_assets_refer_to_no_other_host() -> None:
    own = [p for p in STATIC_DIR.rglob("*") if p.is_file() and "vendor" not in p.parts]
    assert {p.suffix for p in own} >= {".html", ".js", ".css", ".svg"}
    for path in own:
        text = path.read_text()
        if path.suffix == ".svg":  # its XML namespace is a name, not a load
            text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "http://" not in text and "https://" not in text, path
    for css in STATIC_DIR.rglob("*.css"):
        urls = [u for u in _CSS_URL.findall(css.read_text()) if not u.startswith("data:")]
        assert not [u for u in urls if _external(u)], (css, urls)


def test_reference_pages_render_offline_in_a_browser(stack: Stack) -> None:
    """In Chromium, every request leaving 127.0.0.1 is refused and recorded: the pages must
    render all the same and have asked for nothing outside."""
    outside: list[str] = []

    def guard(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and (
            urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1")
        ):
            outside.append(url)
            route.abort()
        else:
            route.continue_()

    with chromium() as browser:
        context = browser.new_context()
        context.route("**/*", guard)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        page.goto(f"{stack.api_url}/schema/swagger")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("PrinterMaster API")
        expect(page.locator(".opblock-tag-section").first).to_be_visible()
        expect(page.locator(".btn.authorize")).to_be_visible()  # takes an API key

        for path in ("/schema", "/schema/redoc"):
            page.goto(f"{stack.api_url}{path}")
            expect(page.locator("h1").first).to_contain_text("PrinterMaster API")
            expect(page.get_by_text("/v1/jobs/search").first).to_be_attached()

        page.goto(f"{stack.api_url}/console")
        page.fill("#api-key", stack.api_token)
        page.click("button[type=submit]")
        expect(page.locator(".tiles .tile").first).to_be_visible()
        page.wait_for_load_state("networkidle")
        context.close()
    assert not outside, outside
    assert not errors, errors


def test_pages_forbid_other_hosts_to_the_browser(stack: Stack) -> None:
    """A Content-Security-Policy backs the above: what a vendored bundle might still ask for
    (ReDoc's sidebar logo) is refused by the browser itself; the console, which holds an API
    key, runs no inline script at all."""
    with httpx.Client(base_url=stack.api_url, timeout=10) as http:
        for path in [*PAGES, "/console/js/main.js"]:
            policy = http.get(path).headers.get("content-security-policy", "")
            assert "default-src 'self'" in policy and "connect-src 'self'" in policy, path
            if path.startswith("/console"):
                assert "unsafe-inline" not in policy and "script-src 'self';" in policy, path


def test_console_serves_its_files_and_nothing_else(stack: Stack) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=10) as http:
        module = http.get("/console/js/main.js")
        assert module.status_code == 200
        assert module.headers["content-type"].startswith("text/javascript")  # ES modules need it
        assert http.get("/console/js/nope.js").status_code == 404
        for escape in (
            "/console/../_static.py",
            "/console/%2e%2e/_static.py",
            "/console/..%2f_feed.py",
        ):
            answer = http.get(escape)
            assert answer.status_code == 404 and "CONSOLE_PATH" not in answer.text, escape


def test_openapi_document_declares_the_bearer_key(stack: Stack) -> None:
    schema = httpx.get(f"{stack.api_url}/schema/openapi.json", timeout=10).json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (pmk_...) or the operator's token",
    }
    assert schema["security"] == [{"bearer": []}]
    assert "/v1/console/branches" in schema["paths"] and "/v1/events" in schema["paths"]
