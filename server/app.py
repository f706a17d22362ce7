"""The FastAPI application: `create_app(settings)` wires the index, routes, errors and CORS."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import jinja2
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from indexer.retrieval import Searcher
from indexer.settings import Settings
from indexer.store import read_stats
from server import api, pages
from server.errors import install_error_handlers
from server.views import doc_url, highlight_hit, hit_url

HERE = Path(__file__).parent
log = logging.getLogger("uvicorn.error")


def create_app(settings: Settings, searcher: Searcher | None = None) -> FastAPI:
    """The app for `settings.index`, or for `searcher` when one is already open (tests).

    A missing or incompatible index fails here, before the server starts, with a
    one-line `ParaciteError`; the model itself loads in the lifespan.
    """
    if searcher is None:
        read_stats(settings.index)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = searcher or Searcher.open(
            settings.index, answer_threshold=settings.answer_threshold
        )
        app.state.searcher = opened
        log.info(
            "paracite serving %d documents from %s at http://%s:%d/",
            opened.stats().documents,
            opened.index_dir,
            settings.host,
            settings.port,
        )
        try:
            yield
        finally:
            if searcher is None:
                opened.close()

    app = FastAPI(
        title="paracite",
        summary="Answers to questions about your documents, cited to the paragraph.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.templates = make_templates()
    install_error_handlers(app)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(ApiCors, origins=settings.cors_origins)
    return app


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(doc_url=doc_url, hit_url=hit_url, highlight_hit=highlight_hit)
    return Jinja2Templates(env=env)


class ApiCors:
    """CORS for the read-only JSON endpoints only; the pages stay same-origin."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            max_age=3600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        is_api = path.startswith("/api/") or path == "/healthz"
        await (self.cors if is_api else self.app)(scope, receive, send)
