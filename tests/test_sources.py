"""Sources apart from related passages: the API marks them, pages and the embed show them apart."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from cache_helpers import built_index, fixture_cache
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.retrieval import Searcher
from indexer.settings import Settings
from server.app import create_app

FILES = {
    "coast.md": "# Coast\n\nThe lighthouse keepers live in the stone cottage by the tower.\n",
    "sub/harbour.txt": "The harbour master watches the lighthouse from the quay.\n",
    "bakery.txt": "The bakery sells bread and pastries every morning.\n",
}
ON_TOPIC = "Where do the lighthouse keepers live?"
OFF_TOPIC = "What is the boiling point of mercury?"


@pytest.fixture(scope="module")
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("sources-docs")
    for name, text in FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    index_dir = tmp_path_factory.mktemp("sources-index") / "idx"
    built_index(
        fixture_cache(request.config),
        "sources-index",
        index_dir,
        lambda target: build_index(folder, Settings(index=target), embedder=embedder),
    )
    searcher = Searcher.open(index_dir, embedder)
    with TestClient(create_app(Settings(index=index_dir), searcher)) as test_client:
        yield test_client
    searcher.close()


def _ask(client: TestClient, question: str) -> dict:
    response = client.get("/api/ask", params={"q": question, "k": 3})
    assert response.status_code == 200
    return response.json()


def test_the_api_marks_sources_and_related_passages(client: TestClient) -> None:
    data = _ask(client, ON_TOPIC)
    cited = {p["doc_id"]: p["cited"] for p in data["passages"]}
    assert cited == {"coast.md": True, "sub/harbour.txt": True, "bakery.txt": False}
    answered = data["passages"][data["answer"]["passage"] - 1]
    assert answered["cited"] and answered["doc_id"] == "coast.md"


def test_with_no_answer_nothing_is_a_source(client: TestClient) -> None:
    data = _ask(client, OFF_TOPIC)
    assert data["answer"] is None
    assert data["passages"] and not any(p["cited"] for p in data["passages"])


PASSAGE_SECTIONS = {"Sources", "Related passages", "Closest passages", "More passages"}


def _sections(page: str) -> list[str]:
    """The headings of the passage lists, in order (not those of the facets)."""
    headings = re.findall(r'<h2 class="section-label">([^<]+)</h2>', page)
    return [heading for heading in headings if heading in PASSAGE_SECTIONS]


@pytest.mark.parametrize("path", ["/", "/embed"])
def test_pages_show_sources_first_and_related_passages_plainly(
    client: TestClient, path: str
) -> None:
    page = client.get(path, params={"q": ON_TOPIC, "k": 3}).text
    assert _sections(page) == ["Sources", "Related passages"]
    sources, related = page.split("Related passages", 1)
    assert "stone cottage" in sources and "bread and pastries" in related
    assert "<mark>" in sources and "<mark>" not in related

    closest = client.get(path, params={"q": OFF_TOPIC, "k": 3}).text
    assert _sections(closest) == ["Closest passages"]
    assert "<mark>" not in closest.split("Closest passages", 1)[1]
