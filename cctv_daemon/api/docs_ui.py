"""`/docs` without the network: FastAPI's own Swagger UI page loads its script and stylesheet from a CDN, which a
recorder on an offline site cannot reach. The same page is served here with Swagger UI's files from the
`fastapi-offline` wheel (Swagger UI 5.x, which renders the OpenAPI 3.1 document FastAPI makes), mounted at
DOCS_ASSETS. Like the page, /docs and its files need no token (the document itself holds no secret)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
DOCS_ASSETS = "/docs-assets"


def swagger_ui_dir() -> Path:
    """The folder of Swagger UI's files inside the installed fastapi-offline package (not imported: only its
    files are used)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("the fastapi-offline package (Swagger UI's files for /docs) is not installed")
    return Path(spec.origin).parent / "static"


def add_docs(app: FastAPI) -> None:
    """Call with an app made with docs_url=None, before any catch-all mount at /."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    html = get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - API",
                               swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png").body

    @app.get(DOCS_URL, include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(html)
