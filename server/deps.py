"""Dependencies the routes share; tests override `get_searcher` to use their own index."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from fastapi.templating import Jinja2Templates

from indexer.live import LiveIndex
from indexer.retrieval import Searcher


def get_searcher(request: Request) -> Iterator[Searcher]:
    """The searcher of the live generation, held until the response is sent.

    The server follows the index (`server.app.lifespan` sets up a `LiveIndex`): a newly
    published generation answers from the next request on. An app made around one open
    searcher (tests) always answers from that one.
    """
    live: LiveIndex | None = request.app.state.live
    if live is None:
        yield request.app.state.searcher
        return
    with live.searcher() as searcher:
        yield searcher


def get_templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates
