"""The FastAPI application: routes (routes_*.py), /docs served offline (docs_ui.py), the page at / (static/),
optional CORS, and a catch-all that turns an unexpected error into a 500 without details (never a traceback or
a path)."""

from __future__ import annotations

from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from cctv_daemon import __version__
from cctv_daemon.api import docs_ui, routes_cameras, routes_live, routes_segments, routes_system
from cctv_daemon.api.context import ApiContext
from cctv_daemon.api.media import ExportDigests
from cctv_daemon.api.models import ERRORS

log = structlog.get_logger("cctv_daemon.api")

STATIC_DIR = Path(__file__).parent / "static"


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title="cctv-daemon", version=__version__, docs_url=None, redoc_url=None,
                  description="Status, control, playback, export and metrics of a cctv-daemon (docs/api.md).")
    app.state.ctx = ctx
    app.state.exports = ExportDigests()
    app.include_router(routes_system.router)
    app.include_router(routes_cameras.router, responses=ERRORS)
    app.include_router(routes_segments.router, responses=ERRORS)
    app.include_router(routes_live.router, responses=ERRORS)
    docs_ui.add_docs(app)  # /docs with Swagger UI's files from a wheel, not a CDN
    if ctx.config.api.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(ctx.config.api.cors), allow_credentials=True,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "X-CSRF-Token", "Range"])

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        from cctv_daemon.catalog.engine import is_connection_error

        if is_connection_error(exc):  # the catalog database (catalog.url) is away: it comes back by itself
            log.warning("api_catalog_unavailable")
            return JSONResponse({"detail": "the catalog database is unavailable; try again shortly"},
                                status_code=503, headers={"Retry-After": "5"})
        log.error("api_error", error_type=type(exc).__name__)
        return JSONResponse({"detail": "internal error (see the daemon's log)"}, status_code=500)

    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="page")
    return app
