"""Filters (a document, a folder, a format) narrow the candidates before ranking; paging."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cache_helpers import built_index, fixture_cache
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.errors import DocumentNotFound, InvalidQuery
from indexer.ranking import RowRanges
from indexer.retrieval import MAX_OFFSET, Scope, Searcher
from indexer.settings import Settings
from server.app import create_app

QUESTION = "Where do the lighthouse keepers live?"
FILES = {
    "coast.md": "# Coast\n\nThe lighthouse keepers live in the stone cottage by the tower.\n",
    "sub/harbour.txt": "The harbour master watches the lighthouse from the quay.\n",
    "sub/deeper/mill.txt": "The miller lives beside the windmill, far from any lighthouse.\n",
    "subway.txt": "The subway runs under the city; no lighthouse keeper rides it.\n",
    "notes.html": "<html><body><p>Lighthouse keepers kept a logbook of every storm.</p>"
    "<p>The keepers lived in the cottage for forty years.</p></body></html>",
}


@pytest.fixture(scope="module")
def corpus_index(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Path:
    folder = tmp_path_factory.mktemp("filters-docs")
    for name, text in FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    index_dir = tmp_path_factory.mktemp("filters-index") / "idx"
    # with an ANN structure, so that both paths can be searched
    return built_index(
        fixture_cache(request.config),
        "filters-index",
        index_dir,
        lambda target: build_index(
            folder, Settings(index=target, ann_min_passages=0), embedder=embedder
        ),
    )


@pytest.fixture(scope="module", params=["exact", "ann"])
def searcher(
    request: pytest.FixtureRequest, corpus_index: Path, embedder: Embedder
) -> Iterator[Searcher]:
    """The same index searched exactly and through the ANN structure.

    With no answerability minimum: these tests are about where answers come from, and the
    notes' sentence ("The keepers lived in the cottage") sits near the fitted minimum, which
    moves whenever a model is refitted (tests/test_answerability.py tests the gate)."""
    minimum = 0 if request.param == "ann" else 10**9
    opened = Searcher.open(corpus_index, embedder, ann_min_passages=minimum, min_confidence=0.0)
    assert opened.uses_ann == (request.param == "ann")
    yield opened
    opened.close()


def test_from_settings_honours_the_ann_minimum(corpus_index: Path, embedder: Embedder) -> None:
    for minimum, uses_ann in ((0, True), (10**9, False)):
        settings = Settings(index=corpus_index, ann_min_passages=minimum)
        opened = Searcher.from_settings(settings, embedder=embedder)
        try:
            assert opened.uses_ann == uses_ann
        finally:
            opened.close()


def _docs(searcher: Searcher, **scope: str) -> list[str]:
    result = searcher.search(QUESTION, 10, scope=Scope(**scope))
    return [hit.passage.doc_id for hit in result.hits]


def test_a_document_filter_searches_that_document_only(searcher: Searcher) -> None:
    assert set(_docs(searcher, doc="notes.html")) == {"notes.html"}
    with pytest.raises(DocumentNotFound):
        searcher.ask(QUESTION, scope=Scope(doc="no-such.txt"))


def test_a_folder_filter_takes_the_folder_and_its_subfolders_only(searcher: Searcher) -> None:
    expected = {"sub/harbour.txt", "sub/deeper/mill.txt"}
    assert set(_docs(searcher, folder="sub")) == expected
    assert set(_docs(searcher, folder="sub/")) == expected  # 'subway.txt' is not in 'sub'
    assert set(_docs(searcher, folder="sub/deeper")) == {"sub/deeper/mill.txt"}
    assert _docs(searcher, folder="su") == []


def test_a_format_filter_and_filters_together(searcher: Searcher) -> None:
    assert set(_docs(searcher, format="text")) == {
        "sub/harbour.txt",
        "sub/deeper/mill.txt",
        "subway.txt",
    }
    assert set(_docs(searcher, format="text", folder="sub/deeper")) == {"sub/deeper/mill.txt"}
    with pytest.raises(InvalidQuery, match="format must be one of html, markdown, text"):
        searcher.ask(QUESTION, scope=Scope(format="pdf"))


def test_a_filtered_question_is_answered_from_the_scope(searcher: Searcher) -> None:
    everywhere = searcher.ask(QUESTION)
    assert everywhere.answer is not None and everywhere.answer.doc_id == "coast.md"
    in_notes = searcher.ask(QUESTION, scope=Scope(doc="notes.html"))
    assert in_notes.answer is not None and in_notes.answer.doc_id == "notes.html"


def test_the_scope_narrows_candidates_before_ranking(
    corpus_index: Path, embedder: Embedder
) -> None:
    # With one candidate per signal, the unfiltered candidates hold no passage of the
    # windmill's folder; a filter applied after ranking would find nothing there.
    narrow = Searcher(corpus_index, embedder, candidates_per_signal=1)
    try:
        unfiltered = narrow.search(QUESTION, 1)
        assert unfiltered.hits[0].passage.doc_id != "sub/deeper/mill.txt"
        scoped = narrow.search(QUESTION, 1, scope=Scope(folder="sub/deeper"))
        assert [hit.passage.doc_id for hit in scoped.hits] == ["sub/deeper/mill.txt"]
    finally:
        narrow.close()


def test_pages_continue_the_ranking_and_only_the_first_has_the_answer(
    searcher: Searcher,
) -> None:
    first_four = searcher.ask(QUESTION, 4)
    second_page = searcher.ask(QUESTION, 2, offset=2)
    assert [(h.rank, h.passage) for h in second_page.hits] == [
        (h.rank, h.passage) for h in first_four.hits[2:]
    ]
    assert (second_page.answer, second_page.no_answer_reason) == (None, None)
    past_the_end = searcher.ask(QUESTION, 5, offset=40)
    assert past_the_end.hits == []
    for offset in (-1, MAX_OFFSET + 1):
        with pytest.raises(InvalidQuery, match="offset must be a whole number"):
            searcher.ask(QUESTION, offset=offset)


def test_row_ranges_contain_their_rows_only() -> None:
    ranges = RowRanges(np.array([[2, 4], [7, 8]], dtype=np.int64))
    assert ranges.count == 3
    assert ranges.rows().tolist() == [2, 3, 7]
    assert ranges.contains(np.arange(10)).tolist() == [
        False, False, True, True, False, False, False, True, False, False,
    ]  # fmt: skip


# -- through the API, the CLI and the pages ----------------------------------------------------


@pytest.fixture(scope="module")
def client(corpus_index: Path, embedder: Embedder) -> Iterator[TestClient]:
    opened = Searcher.open(corpus_index, embedder, min_confidence=0.0)  # as `searcher` above
    with TestClient(create_app(Settings(index=corpus_index), opened)) as test_client:
        yield test_client
    opened.close()


def _passage_docs(body: dict) -> list[str]:
    return [passage["doc_id"] for passage in body["passages"]]


def test_the_api_filters_by_get_and_post(client: TestClient) -> None:
    folder = client.get("/api/ask", params={"q": QUESTION, "folder": "sub", "k": 10}).json()
    assert set(_passage_docs(folder)) == {"sub/harbour.txt", "sub/deeper/mill.txt"}
    posted = client.post("/api/ask", json={"q": QUESTION, "doc": "notes.html", "k": 10}).json()
    assert set(_passage_docs(posted)) == {"notes.html"}
    assert posted["answer"]["doc_id"] == "notes.html"
    formatted = client.get("/api/search", params={"q": QUESTION, "format": "html"}).json()
    assert set(_passage_docs(formatted)) == {"notes.html"}


def test_the_api_pages_through_the_ranking(client: TestClient) -> None:
    four = client.get("/api/search", params={"q": QUESTION, "k": 4}).json()["passages"]
    page = client.get("/api/search", params={"q": QUESTION, "k": 2, "offset": 2}).json()
    assert [(p["rank"], p["doc_id"], p["paragraph"]) for p in page["passages"]] == [
        (p["rank"], p["doc_id"], p["paragraph"]) for p in four[2:]
    ]


def test_bad_filters_and_offsets_are_said_plainly(client: TestClient) -> None:
    cases = {
        (("offset", "two"),): (422, "offset must be a whole number from 0 to 450"),
        (("offset", "-1"),): (422, "offset must be a whole number from 0 to 450"),
        (("format", "pdf"),): (422, "format must be one of html, markdown, text (in this index)"),
        (("doc", "missing.txt"),): (404, "no document 'missing.txt' in the index"),
    }
    for params, (status, message) in cases.items():
        response = client.get("/api/ask", params={"q": QUESTION, **dict(params)})
        assert (response.status_code, response.json()["error"]["message"]) == (status, message)


def test_the_cli_takes_the_same_filters(corpus_index: Path) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "server.cli", "search", QUESTION, "--folder", "sub", "-k", "10",
         "--json", "--index", str(corpus_index)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert set(_passage_docs(json.loads(printed.stdout))) == {
        "sub/harbour.txt",
        "sub/deeper/mill.txt",
    }


def test_results_pages_show_filters_facets_and_the_next_page(client: TestClient) -> None:
    everything = client.get("/", params={"q": QUESTION, "k": 2}).text
    assert 'href="/?q=Where+do+the+lighthouse+keepers+live%3F&amp;k=2&amp;mode=hybrid' in everything
    assert "folder=sub" in everything and "doc=notes.html" in everything  # facets link there
    assert 'rel="next"' in everything and "offset=2" in everything

    narrowed = client.get("/", params={"q": QUESTION, "folder": "sub"}).text
    assert "Searching only" in narrowed and "<strong>sub</strong>" in narrowed
    assert '<input type="hidden" name="folder" value="sub">' in narrowed  # kept when asking again
    assert "coast.md" not in narrowed

    second = client.get("/", params={"q": QUESTION, "k": 2, "offset": 2}).text
    assert "More passages" in second and 'rel="prev"' in second
    assert 'class="answer"' not in second  # the answer is on the first page


def test_row_ranges_less_excluded_ranges() -> None:
    ranges = RowRanges(np.array([[0, 10], [20, 30]], dtype=np.int64))
    excluded = np.array([[2, 4], [9, 21], [29, 40]], dtype=np.int64)
    assert ranges.without(excluded).bounds.tolist() == [[0, 2], [4, 9], [21, 29]]
    assert ranges.without(np.zeros((0, 2), dtype=np.int64)).bounds.tolist() == [[0, 10], [20, 30]]


def test_empty_filter_values_are_no_filter(client: TestClient) -> None:
    given = client.get("/api/search", params={"q": QUESTION, "doc": "", "folder": "", "format": ""})
    plain = client.get("/api/search", params={"q": QUESTION})
    assert _passage_docs(given.json()) == _passage_docs(plain.json())
    assert Scope(doc="", folder="", format="") == Scope()


def test_an_unknown_document_is_404_with_other_filters_too(client: TestClient) -> None:
    response = client.get("/api/ask", params={"q": QUESTION, "doc": "gone.txt", "folder": "sub"})
    assert response.status_code == 404
    outside = client.get("/api/ask", params={"q": QUESTION, "doc": "coast.md", "folder": "sub"})
    assert outside.status_code == 200 and outside.json()["passages"] == []
