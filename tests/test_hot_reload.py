"""`paracite serve` follows the index: new generations are served without a restart."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_helpers import ORCHARD
from server_helpers import LiveServer

from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.settings import Settings
from server.app import create_app

MILL = "The windmill ground wheat into flour for the whole valley.\n"
# Bounds the client's loop whatever the machine's speed; it normally stops long before.
MAX_QUESTIONS = 2000


@pytest.fixture
def served(docs: Path, tmp_path: Path, embedder: Embedder) -> Iterator[tuple[Settings, str]]:
    """A real server over an index of `docs`, opened the way `paracite serve` opens it."""
    settings = Settings(index=tmp_path / "index")
    build_index(docs, settings, embedder=embedder)
    with LiveServer(create_app(settings)) as server:
        yield settings, server.url


def _top_doc(client: httpx.Client, question: str) -> str:
    response = client.get("/api/ask", params={"q": question, "k": 1})
    assert response.status_code == 200, response.text
    return str(response.json()["passages"][0]["doc_id"])


def test_questions_keep_answering_while_the_index_is_published_twice(
    docs: Path, served: tuple[Settings, str], embedder: Embedder
) -> None:
    settings, url = served
    statuses: list[int] = []
    stop = threading.Event()

    def ask_until_stopped() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(MAX_QUESTIONS):
                if stop.is_set():
                    return
                response = client.get("/api/ask", params={"q": "Who lit the lamp?"})
                statuses.append(response.status_code)

    asker = threading.Thread(target=ask_until_stopped)
    asker.start()
    try:
        (docs / "orchard.txt").write_text(ORCHARD, encoding="utf-8")
        build_index(docs, settings, embedder=embedder)
        with httpx.Client(base_url=url, timeout=60) as client:
            assert _top_doc(client, "How many kinds of apples grow here?") == "orchard.txt"
            (docs / "mill.txt").write_text(MILL, encoding="utf-8")
            build_index(docs, settings, embedder=embedder)
            assert _top_doc(client, "What did the windmill grind?") == "mill.txt"
            health = client.get("/healthz").json()
            assert (health["status"], health["documents"]) == ("ok", 3)
    finally:
        stop.set()
        asker.join(timeout=120)
    assert statuses, "the client asked nothing"
    assert set(statuses) == {200}


def test_a_removed_index_is_503_until_it_is_rebuilt(
    docs: Path, served: tuple[Settings, str], embedder: Embedder
) -> None:
    settings, url = served
    with httpx.Client(base_url=url, timeout=60) as client:
        assert _top_doc(client, "Who lit the lamp?") == "lighthouse.txt"
        shutil.rmtree(settings.index)
        for path in ("/api/ask?q=lamp", "/healthz"):
            response = client.get(path)
            assert response.status_code == 503
            assert "no index" in response.json()["error"]["message"]
        assert client.get("/?q=lamp").status_code == 503

        build_index(docs, settings, embedder=embedder)
        assert _top_doc(client, "Who lit the lamp?") == "lighthouse.txt"
        assert client.get("/healthz").json()["status"] == "ok"
