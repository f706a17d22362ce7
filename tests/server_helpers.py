"""Fixtures and helpers for the server tests (loaded with `pytest_plugins = ["server_helpers"]`).

`client` serves the seed index; `mixed_client` serves the seeds plus hostile documents whose
text and names carry HTML, to show that everything is escaped. `LiveServer` runs the real app
under uvicorn on a free loopback port for the browser tests.

The test modules import helpers from here before pytest loads it as a plugin, so assertion
rewriting is off for it (PYTEST_DONT_REWRITE) rather than warned about.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from cache_helpers import built_index, fixture_cache
from fastapi import FastAPI
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.retrieval import Searcher
from indexer.settings import Settings
from server.app import create_app

SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
EVIL_DOC = "evil.txt"
EVIL_TITLE = f"Attack {SCRIPT} Notes"
EVIL_TEXT = f"""{EVIL_TITLE}

The {SCRIPT} tag makes a browser run code when a page inserts document text without escaping.

Cross-site scripting is prevented by escaping: the browser then shows {SCRIPT} as plain text.
"""
# A doc id with a space, a subfolder and markup in it: links must quote it, pages escape it.
ODD_DOC = "nested/odd name <img src=x onerror=alert(2)>.txt"
ODD_TEXT = "Quokkas are small marsupials that live on Rottnest Island near Perth.\n"
EVIL_QUESTION = "How does a script tag make a browser run code?"
SEED_QUESTION = "Why does Kim Jong Un distrust the United States?"


@pytest.fixture(scope="session")
def mixed_index(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    embedder: Embedder,
    seeds_copy: Path,
) -> Path:
    """An index of the seeds plus two hostile documents."""
    folder = tmp_path_factory.mktemp("mixed")
    for path in seeds_copy.iterdir():
        shutil.copy(path, folder / path.name)
    (folder / EVIL_DOC).write_text(EVIL_TEXT, encoding="utf-8")
    (folder / ODD_DOC).parent.mkdir()
    (folder / ODD_DOC).write_text(ODD_TEXT, encoding="utf-8")
    return built_index(
        fixture_cache(request.config),
        "mixed-index",
        tmp_path_factory.mktemp("mixed-index") / "idx",
        lambda index_dir: build_index(folder, Settings(index=index_dir), embedder=embedder),
    )


@pytest.fixture(scope="session")
def mixed_searcher(mixed_index: Path, embedder: Embedder) -> Iterator[Searcher]:
    opened = Searcher.open(mixed_index, embedder)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def client(seed_index: Path, searcher: Searcher) -> Iterator[TestClient]:
    """The app over the seed index, lifespan run, sharing the session's searcher."""
    with TestClient(create_app(Settings(index=seed_index), searcher)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def mixed_client(mixed_index: Path, mixed_searcher: Searcher) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(index=mixed_index), mixed_searcher)) as test_client:
        yield test_client


def error_of(response: object) -> dict[str, object]:
    """The `error` object of a JSON error response."""
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}, body
    error: dict[str, object] = body["error"]
    assert set(error) == {"status", "message"}
    assert error["status"] == response.status_code  # type: ignore[attr-defined]
    assert isinstance(error["message"], str) and error["message"]
    return error


class LiveServer:
    """The app under a real uvicorn, in a daemon thread, on a free port of 127.0.0.1."""

    def __init__(self, app: FastAPI) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 120  # against a hang, not a guess at speed
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
