"""Swagger UI at /docs and ReDoc at /redoc, their JavaScript and CSS served by the service itself:
ops read the API in closed networks, where no CDN answers. The licensing rules the API cites as
(R1)–(R10) are at /docs/rules, its contract at /docs/contract and the error reference at /docs/errors,
rendered here from the Markdown shipped in the package (`service/docs/`)."""

import re
from collections.abc import Awaitable, Callable
from functools import cache
from html import escape
from importlib.resources import files
from itertools import pairwise
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from markdown_it import MarkdownIt

ASSETS = "/docs-assets"
OPENAPI_URL = "/openapi.json"  # FastAPI's default, which the app keeps
RULES_URL = "/docs/rules"
# Package data beside the modules: the work tree under `pip install -e .`, site-packages in the image.
DOCUMENTS = Path(__file__).resolve().parent.parent / "docs"
PAGES = {
    RULES_URL: "licensing-rules.md",
    "/docs/contract": "api-contract.md",
    "/docs/errors": "errors.md",
    "/docs/certificates": "certificates.md",
}

# Styles inline and nothing else loaded: the pages work in a closed network and run no script.
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222;
  overflow-wrap: anywhere; }}
code {{ font-family: ui-monospace, monospace; background: #f3f3f3; padding: 0 .2em; }}
pre {{ background: #f3f3f3; padding: .75rem; overflow-x: auto; }}
/* A wide table scrolls by itself on a phone; the page does not. */
table {{ border-collapse: collapse; display: block; max-width: 100%; overflow-x: auto; }}
th, td {{ border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; }}
:target {{ background: #fff6d5; }}
</style></head>
<body><nav><a href="/docs">API</a> · <a href="/docs/rules">Rules</a> · <a href="/docs/contract">Contract</a>
 · <a href="/docs/errors">Errors</a></nav>
<main>{body}</main></body></html>
"""
_SECURITY = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
# ReDoc's footer shows Redocly's logo from a CDN (its bundle names the address): the browser is told to load
# nothing from anywhere but the service, so the page asks no other host, and ReDoc leaves the logo out when it fails.
_REDOC_SECURITY = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "worker-src 'self' blob:"
}


def anchor(heading: str) -> str:
    """`R4 — one license` is `r4`, the anchor the API document links to; any other heading is its words,
    joined by hyphens."""
    rule = re.match(r"(R\d+)\b", heading)
    return rule.group(1).lower() if rule else re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


@cache
def page(name: str) -> str:
    """A Markdown document of `service/docs/` as an HTML page, its raw HTML escaped, each heading with an id."""
    markdown = (DOCUMENTS / name).read_text(encoding="utf-8")
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = renderer.parse(markdown)
    headings: list[str] = []
    for opening, inline in pairwise(tokens):
        if opening.type == "heading_open":
            opening.attrSet("id", anchor(inline.content))
            headings.append(inline.content)
    return _PAGE.format(title=escape(headings[0]), body=renderer.renderer.render(tokens, renderer.options, {}))


def _serve(name: str) -> Callable[[], Awaitable[HTMLResponse]]:
    """The route of one page: it takes no parameter, so no request can name another file."""

    async def markdown_page() -> HTMLResponse:
        return HTMLResponse(page(name), headers=_SECURITY)

    return markdown_page


def install(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=f"{app.title} — API",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            # Nothing kept in the browser's localStorage: a reseller's client secret or a token would outlive the tab.
            swagger_ui_parameters={"persistAuthorization": False},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=OPENAPI_URL,
            title=f"{app.title} — ReDoc",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
        page.headers.update(_REDOC_SECURITY)
        return page

    for url, name in PAGES.items():
        app.add_api_route(url, _serve(name), methods=["GET"], include_in_schema=False)
