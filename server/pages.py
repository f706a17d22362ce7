"""The server-rendered pages: home and results, document pages, the iframe embed, widget.js."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from indexer.errors import ParaciteError
from indexer.retrieval import Mode, Searcher
from server.api import ScopeDep
from server.deps import get_searcher, get_templates
from server.views import (
    FACET_DEPTH,
    IndexSummary,
    ResultLinks,
    document_blocks,
    example_queries,
    facets,
    index_summary,
    parse_span,
    scope_params,
    shown_metadata,
)

T = TypeVar("T")
STATIC = Path(__file__).parent / "static"
EXAMPLE_SOURCES = 20  # documents looked at for example questions

router = APIRouter(include_in_schema=False)
SearcherDep = Annotated[Searcher, Depends(get_searcher)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    searcher: SearcherDep,
    templates: TemplatesDep,
    scope: ScopeDep,
    q: str | None = None,
    k: int = 5,
    mode: Mode = "hybrid",
    offset: int = 0,
) -> Any:
    """The search box and the collection; with `?q=` the answer and its cited passages,
    narrowed by `doc`, `folder` or `format`, a page further on with `offset`."""
    if not q:
        context = {
            "documents": searcher.documents(),
            "examples": examples(request, searcher),
            "json_url": "/api/documents",
        }
        return templates.TemplateResponse(request, "home.html", context)
    result = searcher.ask(q, k, mode, scope=scope, offset=offset, ranked=FACET_DEPTH)
    asked: dict[str, str | int] = {
        "q": result.query,
        "k": k,
        "mode": mode,
        "offset": offset,
        **scope_params(scope),
    }
    context = {
        "result": result,
        "summary": summary(request, searcher),
        "query": result.query,
        "scope": scope_params(scope),
        "facets": facets(result.ranking),
        "links": ResultLinks.of(asked, len(result.hits)),
        "json_url": "/api/ask?" + urlencode(asked),
    }
    return templates.TemplateResponse(request, "results.html", context)


@router.get("/doc/{doc_id:path}", response_class=HTMLResponse)
def document(
    request: Request,
    searcher: SearcherDep,
    templates: TemplatesDep,
    doc_id: str,
    hl: str | None = None,
    short: str | None = None,
) -> Any:
    """Every paragraph of a document, numbered and anchored; `?hl=start-end` marks a span,
    and `&short=start-end` shows the short answer inside it in bold."""
    view = searcher.document(doc_id)
    context = {
        "doc": view.info,
        "blocks": document_blocks(view, parse_span(hl), parse_span(short)),
        "metadata": shown_metadata(view.info.metadata),
        "page_url": public_url(request) + "/doc/" + quote(doc_id, safe="/"),
        "json_url": "/api/documents/" + quote(doc_id, safe="/"),
    }
    return templates.TemplateResponse(request, "document.html", context)


@router.get("/embed", response_class=HTMLResponse)
def embed(
    request: Request,
    searcher: SearcherDep,
    templates: TemplatesDep,
    q: str | None = None,
    k: int = 3,
) -> Any:
    """A bare search page for an <iframe>; its links open the full document pages."""
    result = searcher.ask(q, k) if q else None
    context = {
        "result": result,
        "query": result.query if result else "",
        "k": k,
        "base": public_url(request),
        "json_url": "/api/ask?" + urlencode({"q": q, "k": k}) if q else "/api/documents",
    }
    return templates.TemplateResponse(request, "embed.html", context)


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """The icon browsers ask for on their own (pages also name /static/favicon.svg)."""
    return FileResponse(
        STATIC / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/widget.js")
def widget() -> FileResponse:
    """The embeddable search widget (see the README for the two-line snippet)."""
    return FileResponse(
        STATIC / "widget.js",
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


def public_url(request: Request) -> str:
    """PARACITE_PUBLIC_URL (no trailing slash), or "" so that links stay relative.

    Never the request's Host header: a forged one would end up in the links a page hands out.
    """
    return request.app.state.settings.public_url or ""


def examples(request: Request, searcher: Searcher) -> list[str]:
    """Example questions drawn from the collection."""

    def draw() -> list[str]:
        titles, headings = [], []
        for info in searcher.documents()[:EXAMPLE_SOURCES]:
            titles.append(info.title)
            try:
                blocks = searcher.document(info.doc_id).blocks
            except ParaciteError:
                continue
            headings += [block.text for block in blocks if block.kind == "heading"]
        return example_queries(titles, headings)

    return per_generation(request, "examples", searcher, draw)


def summary(request: Request, searcher: Searcher) -> IndexSummary:
    """What was searched and when it was indexed."""
    paragraphs = per_generation(
        request, "paragraphs", searcher, lambda: sum(i.paragraphs for i in searcher.documents())
    )
    return index_summary(searcher.stats(), paragraphs, datetime.now(UTC))


def per_generation(request: Request, name: str, searcher: Searcher, work: Callable[[], T]) -> T:
    """What `work` gives, worked out once per index generation and kept on the app."""
    kept: tuple[Path, T] | None = getattr(request.app.state, name, None)
    if kept is None or kept[0] != searcher.generation:
        kept = (searcher.generation, work())
        setattr(request.app.state, name, kept)
    return kept[1]
