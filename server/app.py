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
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from indexer.embedding import Embedder
from indexer.live import LiveIndex
from indexer.retrieval import MAX_QUERY_CHARS, AnswerModels, Searcher
from indexer.settings import Settings
from indexer.store import check_index, require_generation
from server import api, pages
from server.errors import install_error_handlers, is_api_path, json_error
from server.views import answer_parts, answer_url, doc_url, highlight_hit, hit_url

HERE = Path(__file__).parent
log = logging.getLogger("uvicorn.error")
# The largest request body accepted: a question is at most 1,000 characters, so 64 KiB is
# plenty for any JSON body and small enough that no client can make the server buffer much.
MAX_BODY_BYTES = 64 * 1024


def create_app(
    settings: Settings, searcher: Searcher | None = None, live: LiveIndex | None = None
) -> FastAPI:
    """The app for `settings.index`, following each newly published generation.

    `live` is an index already opened by the caller (`paracite serve` opens it first, so that
    any problem is a one-line error); `searcher` pins the app to one open searcher (tests).
    Otherwise a missing, broken or incompatible index fails here, before the server starts,
    with a one-line `ParaciteError`, and the index and model open in the lifespan.
    """
    if searcher is None and live is None:
        check_index(settings.index)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        following = live
        if following is None and searcher is None:
            following = open_live_index(settings)
        app.state.live = following
        app.state.searcher = searcher
        opened = following.current() if following is not None else searcher
        assert opened is not None
        log.info(
            "paracite serving %d documents from %s at http://%s:%d/ (reader: %s)",
            opened.stats().documents,
            opened.index_dir,
            settings.host,
            settings.port,
            settings.reader,
        )
        try:
            yield
        finally:
            if following is not None and live is None:
                following.close()

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
    app.openapi = lambda: api.openapi_with_bounds(app)  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(HeadAsGet)
    app.add_middleware(ApiCors, origins=settings.cors_origins)
    return app


def open_live_index(settings: Settings) -> LiveIndex:
    """The index at `settings.index`, opened now (model included), following new generations."""

    # Loaded once, with the first generation (so that a missing index is reported before
    # they load): every generation the server moves to answers with the same models.
    models: AnswerModels | None = None

    def open_searcher(index_dir: Path, embedder: Embedder | None) -> Searcher:
        nonlocal models
        if models is None:
            require_generation(index_dir)
            models = AnswerModels.load(settings)
        return Searcher.from_settings(settings, index_dir, embedder, models)

    live = LiveIndex(settings.index, open_searcher)
    live.current()
    return live


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        doc_url=doc_url,
        answer_url=answer_url,
        answer_parts=answer_parts,
        hit_url=hit_url,
        highlight_hit=highlight_hit,
    )
    return Jinja2Templates(env=env)


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413, without buffering them.

    A declared Content-Length over the limit is refused before anything is read; a chunked
    (or under-declared) body is counted as it arrives and refused once it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.message = (
            f"the request body is larger than {limit // 1024} KiB "
            f"(a question is at most {MAX_QUERY_CHARS} characters)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            response = json_error(413, self.message)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised inside the route's body read: the error handlers answer it.
                    raise HTTPException(413, self.message, headers={"Connection": "close"})
            return message

        await self.app(scope, counted_receive, send)


class HeadAsGet:
    """HEAD is answered as GET without the body (FastAPI's routes answer GET only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


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
        await (self.cors if is_api_path(path) else self.app)(scope, receive, send)
