"""Dependencies the routes share; tests override `get_searcher` to use their own index."""

from __future__ import annotations

from fastapi import Request
from fastapi.templating import Jinja2Templates

from indexer.retrieval import Searcher


def get_searcher(request: Request) -> Searcher:
    """The index opened once at start-up (see `server.app.lifespan`)."""
    searcher: Searcher = request.app.state.searcher
    return searcher


def get_templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates
