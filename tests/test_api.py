"""The JSON API through FastAPI's TestClient: every endpoint, every bad input, errors, CORS."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from server_helpers import ODD_DOC, SCRIPT, SEED_QUESTION, error_of

from indexer import retrieval
from indexer.errors import (
    IndexBusy,
    IndexCorrupt,
    IndexNotFound,
    ModelMismatch,
    UnsupportedFile,
)
from indexer.models import NO_ANSWER_MESSAGE, AskResult
from indexer.reader import ALWAYS
from indexer.retrieval import MAX_K, MAX_QUERY_CHARS, MODES, Mode, Searcher
from indexer.settings import Settings
from server import app as app_module
from server.app import create_app
from server.deps import get_searcher
from server.errors import INTERNAL_ERROR, is_api_path

pytest_plugins = ["server_helpers"]

PASSAGE_KEYS = {
    "rank", "score", "doc_id", "title", "section", "paragraph", "page", "text",
    "char_start", "char_end", "answer_start", "answer_end", "cited", "url",
}  # fmt: skip
ANSWER_KEYS = {
    "short",
    "confidence",
    "text",
    "passage",
    "doc_id",
    "title",
    "paragraph",
    "char_start",
    "char_end",
    "score",
    "url",
}


def ask(client: TestClient, question: str = SEED_QUESTION, k: int = 5) -> dict:
    response = client.get("/api/ask", params={"q": question, "k": k})
    assert response.status_code == 200, response.text
    return response.json()


# -- /api/ask and /api/search ------------------------------------------------------------------


def test_ask_answers_with_a_cited_sentence(client: TestClient) -> None:
    data = ask(client)
    assert set(data) == {"query", "answer", "no_answer_reason", "passages", "took_ms"}
    assert data["query"] == SEED_QUESTION
    assert data["no_answer_reason"] is None
    assert len(data["passages"]) == 5
    assert [p["rank"] for p in data["passages"]] == [1, 2, 3, 4, 5]
    answer = data["answer"]
    assert set(answer) == ANSWER_KEYS
    assert 0 < answer["confidence"] <= 1
    cited = data["passages"][answer["passage"] - 1]
    assert (cited["doc_id"], cited["paragraph"]) == (answer["doc_id"], answer["paragraph"])
    assert cited["text"][cited["answer_start"] : cited["answer_end"]] == answer["text"]
    assert cited["char_start"] <= answer["char_start"] < answer["char_end"] <= cited["char_end"]


def test_passages_have_spans_into_the_served_document(client: TestClient) -> None:
    for passage in ask(client, k=10)["passages"]:
        assert set(passage) == PASSAGE_KEYS
        document = client.get(f"/api/documents/{quote(passage['doc_id'])}").json()
        source = document["source"]
        assert 0 <= passage["char_start"] < passage["char_end"] <= len(source)
        if document["format"] == "text":  # plain text: the passage is the source slice itself
            assert source[passage["char_start"] : passage["char_end"]] == passage["text"]
        if passage["answer_start"] is not None:
            assert 0 <= passage["answer_start"] < passage["answer_end"] <= len(passage["text"])


def test_passage_urls_point_at_the_paragraph(client: TestClient) -> None:
    for passage in ask(client)["passages"]:
        path = "/doc/" + quote(passage["doc_id"])
        assert passage["url"].startswith(path)
        assert passage["url"].endswith(f"#p{passage['paragraph']}")
        page = client.get(passage["url"])
        assert page.status_code == 200
        assert f'id="p{passage["paragraph"]}"' in page.text


def test_post_ask_gives_the_same_answer_as_get(client: TestClient) -> None:
    posted = client.post("/api/ask", json={"q": SEED_QUESTION, "k": 3})
    assert posted.status_code == 200
    got = ask(client, k=3)
    for key in ("query", "answer", "no_answer_reason", "passages"):
        assert posted.json()[key] == got[key]


def _passages_of(result: AskResult) -> list[tuple[str, int]]:
    return [(hit.passage.doc_id, hit.passage.paragraph) for hit in result.hits]


def _passages_in(data: dict) -> list[tuple[str, int]]:
    return [(passage["doc_id"], passage["paragraph"]) for passage in data["passages"]]


def test_the_modes_rank_the_seed_question_differently(searcher: Searcher) -> None:
    rankings = [_passages_of(searcher.ask(SEED_QUESTION, 5, mode)) for mode in MODES]
    assert len(set(map(tuple, rankings))) == len(MODES)  # so the next tests can tell them apart


@pytest.mark.parametrize("mode", MODES)
def test_get_and_post_ask_honour_mode(client: TestClient, searcher: Searcher, mode: Mode) -> None:
    expected = searcher.ask(SEED_QUESTION, 5, mode)
    got = client.get("/api/ask", params={"q": SEED_QUESTION, "mode": mode}).json()
    posted = client.post("/api/ask", json={"q": SEED_QUESTION, "mode": mode}).json()
    search = client.get("/api/search", params={"q": SEED_QUESTION, "mode": mode}).json()
    for data in (got, posted, search):
        assert _passages_in(data) == _passages_of(expected), mode
    assert got["answer"]["text"] == posted["answer"]["text"] == expected.answer.text


@pytest.mark.parametrize("k", [1, 7, MAX_K])
def test_k_sets_the_number_of_passages(client: TestClient, k: int) -> None:
    passages = ask(client, k=k)["passages"]
    total = client.get("/healthz").json()["passages"]
    assert len(passages) == min(k, total)


def test_longest_allowed_question_is_answered(client: TestClient) -> None:
    question = ("Kim Jong Un trust " * 100)[:MAX_QUERY_CHARS]
    assert client.get("/api/ask", params={"q": question}).status_code == 200


def test_search_returns_passages_without_an_answer(client: TestClient) -> None:
    response = client.get("/api/search", params={"q": SEED_QUESTION, "k": 4})
    assert response.status_code == 200
    data = response.json()
    assert data["answer"] is None and data["no_answer_reason"] is None
    assert len(data["passages"]) == 4
    assert data["passages"] == ask(client, k=4)["passages"]


def test_an_unrelated_question_says_nothing_answers_it(client: TestClient) -> None:
    data = ask(client, "What is the boiling point of liquid nitrogen in kelvin?")
    assert data["answer"] is None
    assert data["no_answer_reason"] == NO_ANSWER_MESSAGE
    assert len(data["passages"]) == 5  # the closest passages are still listed


# -- documents and health ----------------------------------------------------------------------


def test_documents_lists_the_collection(client: TestClient) -> None:
    response = client.get("/api/documents")
    assert response.status_code == 200
    documents = response.json()["documents"]
    assert len(documents) == 2
    for document in documents:
        assert {"doc_id", "title", "format", "paragraphs", "metadata", "url"} <= set(document)
        assert document["paragraphs"] > 0
        assert document["url"] == "/doc/" + quote(document["doc_id"])


def test_document_has_every_paragraph_with_number_section_page_and_span(
    client: TestClient,
) -> None:
    for listed in client.get("/api/documents").json()["documents"]:
        response = client.get(f"/api/documents/{quote(listed['doc_id'])}")
        assert response.status_code == 200
        document = response.json()
        paragraphs = [b for b in document["blocks"] if b["kind"] == "paragraph"]
        assert [b["paragraph"] for b in paragraphs] == list(range(1, listed["paragraphs"] + 1))
        for block in document["blocks"]:
            assert {"section", "page", "char_start", "char_end", "text"} <= set(block)
            assert 0 <= block["char_start"] < block["char_end"] <= len(document["source"])
        assert all(b["url"].endswith(f"#p{b['paragraph']}") for b in paragraphs)


def test_healthz_reports_the_index(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "ok"
    assert data["documents"] == 2
    assert data["passages"] > 0
    assert data["model"] == "all-MiniLM-L6-v2"
    assert data["built_at"]
    assert "path" not in data


def test_healthz_fields_are_exactly_those_the_readme_shows(
    client: TestClient, searcher: Searcher
) -> None:
    data = client.get("/healthz").json()
    types = {
        "status": str, "model": str, "backend": str, "dimension": int, "documents": int,
        "passages": int, "sentences": int, "sentence_vectors": str, "passage_vectors": str,
        "device": str,
        "built_at": str, "format_version": int, "chunking": dict,
    }  # fmt: skip
    assert set(data) == set(types)
    for key, kind in types.items():
        assert type(data[key]) is kind, (key, data[key])
    assert set(data["chunking"]) == {"max_tokens", "overlap", "splitter", "title", "loaders"}
    assert datetime.fromisoformat(data["built_at"]).tzinfo is not None
    stats = searcher.stats()
    assert (data["backend"], data["dimension"]) == (stats.backend, stats.dimension)
    assert (data["sentences"], data["sentence_vectors"]) == (
        stats.sentences,
        stats.sentence_vectors,
    )
    assert data["sentences"] >= data["passages"]


def test_openapi_documents_the_api(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/ask", "/api/search", "/api/documents", "/healthz"} <= set(paths)
    assert {"get", "post"} <= set(paths["/api/ask"])
    assert "/" not in paths  # the pages are not part of the API
    info = client.get("/openapi.json").json()["info"]
    assert info["summary"] == "Answers to questions about your documents, cited to the paragraph."


def test_widget_script_is_served_as_javascript(client: TestClient) -> None:
    response = client.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "attachShadow" in response.text


# -- bad input ---------------------------------------------------------------------------------

BAD_QUERIES = [
    pytest.param({"q": ""}, "empty", id="empty"),
    pytest.param({"q": "   \t  "}, "empty", id="whitespace"),
    pytest.param({}, "empty", id="missing"),
    pytest.param({"q": "x" * (MAX_QUERY_CHARS + 1)}, "longer than", id="too-long"),
    pytest.param({"q": "trust", "k": 0}, "k must be", id="k-zero"),
    pytest.param({"q": "trust", "k": MAX_K + 1}, "k must be", id="k-too-big"),
    pytest.param({"q": "trust", "k": -3}, "k must be", id="k-negative"),
    pytest.param(
        {"q": "trust", "k": "five"}, f"k must be a whole number from 1 to {MAX_K}", id="k-not-int"
    ),
    pytest.param(
        {"q": "trust", "mode": "psychic"}, "mode must be one of hybrid, bm25, dense", id="bad-mode"
    ),
]


@pytest.mark.parametrize("path", ["/api/ask", "/api/search"])
@pytest.mark.parametrize(("params", "message"), BAD_QUERIES)
def test_bad_query_string_is_422_with_a_message(
    client: TestClient, path: str, params: dict, message: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422
    assert message in str(error_of(response)["message"])


@pytest.mark.parametrize(("params", "message"), BAD_QUERIES)
def test_bad_json_body_is_422_with_a_message(
    client: TestClient, params: dict, message: str
) -> None:
    response = client.post("/api/ask", json=params)
    assert response.status_code == 422
    text = str(error_of(response)["message"])
    assert message in text or (not params.get("q") and "q is required" in text)


@pytest.mark.parametrize(
    "body",
    ['{"q": "trust", ', "not json at all", '["q", "trust"]', '"trust"', "", b'{"q": "\x80"}'],
    ids=["truncated", "garbage", "array", "string", "empty", "not-utf8"],
)
def test_malformed_body_is_422(client: TestClient, body: str | bytes) -> None:
    response = client.post("/api/ask", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    error_of(response)


def test_unknown_document_is_404_json(client: TestClient) -> None:
    response = client.get("/api/documents/no-such-file.txt")
    assert response.status_code == 404
    assert "no-such-file.txt" in str(error_of(response)["message"])


@pytest.mark.parametrize(
    "path",
    [
        "/api/documents/..%2F..%2Fpyproject.toml",
        "/api/documents/%2e%2e/%2e%2e/etc/passwd",
        "/api/documents/../../../etc/passwd",
        "/api/documents//etc/passwd",
    ],
)
def test_doc_ids_cannot_escape_the_index(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "root:" not in response.text and "[project]" not in response.text


def test_unknown_api_route_and_method_are_json(client: TestClient) -> None:
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404
    assert error_of(missing)["message"] == "Not Found"
    wrong_method = client.delete("/api/ask")
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["message"] == "Method Not Allowed"


def test_a_body_that_is_not_a_json_object_is_refused_in_a_sentence(client: TestClient) -> None:
    for body in (["trust"], "trust", 3):
        response = client.post("/api/ask", json=body)
        assert response.status_code == 422
        assert error_of(response)["message"] == (
            'the request body must be a JSON object such as {"q": "..."}'
        )


def test_every_bad_field_is_named_in_one_message(client: TestClient) -> None:
    response = client.post("/api/ask", json={"q": "trust", "k": "many", "mode": "fuzzy"})
    assert response.status_code == 422
    assert error_of(response)["message"] == (
        f"k must be a whole number from 1 to {MAX_K}; mode must be one of {', '.join(MODES)}"
    )


# -- errors from the index, and no stack traces ------------------------------------------------


class BrokenSearcher:
    """Stands in for the index when it fails in the middle of serving."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> object:
        def fail(*args: object, **kwargs: object) -> object:
            raise self.error

        return fail


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (IndexNotFound("no index at /gone"), 503),
        (IndexCorrupt("index at /x is unreadable"), 503),
        (IndexBusy("another indexing run (pid 7) is updating /x; wait"), 503),
        (ModelMismatch("index was built with 'other/model' (torch), not 'mini'"), 503),
        (RuntimeError("secret internals"), 500),
    ],
)
def test_index_failures_become_json_errors_without_traceback(
    seed_index: Path, searcher: Searcher, error: Exception, status: int
) -> None:
    app = create_app(Settings(index=seed_index), searcher)
    app.dependency_overrides[get_searcher] = lambda: BrokenSearcher(error)
    with TestClient(app, raise_server_exceptions=False) as broken:
        for path in ("/api/ask?q=trust", "/api/documents", "/healthz"):
            response = broken.get(path)
            assert response.status_code == status
            message = str(error_of(response)["message"])
            assert "Traceback" not in response.text
            assert "secret internals" not in message
            if status == 503:
                assert message == str(error)  # the user is told what is wrong with the index
        page = broken.get("/?q=trust")
        assert page.status_code == status
        assert page.headers["content-type"].startswith("text/html")
        assert "Traceback" not in page.text


def test_a_domain_error_without_a_status_of_its_own_is_a_500_that_says_what_failed(
    seed_index: Path, searcher: Searcher
) -> None:
    error = UnsupportedFile("cannot read notes.xyz: unknown format")
    app = create_app(Settings(index=seed_index), searcher)
    app.dependency_overrides[get_searcher] = lambda: BrokenSearcher(error)
    with TestClient(app, raise_server_exceptions=False) as broken:
        response = broken.get("/api/documents")
    assert response.status_code == 500
    assert error_of(response) == {"status": 500, "message": str(error)}


def test_an_unexpected_error_leaves_its_path_and_traceback_in_the_server_log(
    seed_index: Path, searcher: Searcher
) -> None:
    """The client is told that the server log has the details: it has them."""
    error = RuntimeError("secret internals")
    app = create_app(Settings(index=seed_index), searcher)
    app.dependency_overrides[get_searcher] = lambda: BrokenSearcher(error)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    server_log = logging.getLogger("uvicorn.error")
    server_log.addHandler(handler)
    try:
        with TestClient(app, raise_server_exceptions=False) as broken:
            response = broken.get("/api/documents")
    finally:
        server_log.removeHandler(handler)
    assert error_of(response)["message"] == INTERNAL_ERROR
    [record] = [record for record in records if record.levelno >= logging.ERROR]
    assert record.getMessage() == "unexpected error on /api/documents"
    assert record.exc_info is not None and record.exc_info[1] is error


# -- start-up ----------------------------------------------------------------------------------


class BorrowedSearcher:
    """The session's searcher, lent out: closing it only records that it was closed."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        self.closed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.searcher, name)

    def close(self) -> None:
        self.closed = True


def test_lifespan_opens_the_index_once_and_closes_it(
    seed_index: Path, searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[tuple[Path, dict, BorrowedSearcher]] = []

    def fake_open(index_dir: Path, **options: object) -> BorrowedSearcher:
        opened.append((index_dir, options, BorrowedSearcher(searcher)))
        return opened[-1][2]

    monkeypatch.setattr(app_module.Searcher, "open", fake_open)
    settings = Settings(
        index=seed_index,
        answer_threshold=0.5,
        ann_min_passages=7,
        answer_confidence=0.4,
        reranker_depth=9,
        reader="off",
    )
    with TestClient(create_app(settings)) as fresh:
        assert fresh.get("/healthz").json()["status"] == "ok"
        assert fresh.get("/api/documents").status_code == 200
        assert len(opened) == 1
    [(index_dir, options, borrowed)] = opened
    assert (index_dir, options) == (
        seed_index,
        {
            "embedder": None,
            "answer_threshold": 0.5,
            "ann_min_passages": 7,
            "min_confidence": 0.4,
            "reranker": None,
            "reranker_depth": 9,
            "reader": None,
            "read_when": ALWAYS,
        },
    )
    assert borrowed.closed


def test_the_server_loads_the_reader_once_when_the_setting_asks(
    seed_index: Path, searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[Path] = []
    opened: list[dict] = []
    reader = object()

    def fake_load_reader(cache_dir: Path) -> object:
        loaded.append(cache_dir)
        return reader

    def fake_open(index_dir: Path, **options: object) -> BorrowedSearcher:
        opened.append(options)
        return BorrowedSearcher(searcher)

    monkeypatch.setattr(retrieval, "load_reader", fake_load_reader)
    monkeypatch.setattr(app_module.Searcher, "open", fake_open)
    settings = Settings(index=seed_index, reader="on")
    with TestClient(create_app(settings)) as fresh:
        assert fresh.get("/healthz").json()["status"] == "ok"
    assert loaded == [settings.cache_dir]
    assert [options["reader"] for options in opened] == [reader]


def test_create_app_refuses_a_missing_index(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFound):
        create_app(Settings(index=tmp_path / "nothing"))


def test_serve_without_an_index_prints_one_line(tmp_path: Path) -> None:
    command = "from server.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", command, "serve", "--index", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert "no index at" in output


# -- CORS --------------------------------------------------------------------------------------


def test_cors_allows_any_origin_by_default(client: TestClient) -> None:
    response = client.get(
        "/api/ask", params={"q": "trust"}, headers={"Origin": "https://blog.example"}
    )
    assert response.headers["access-control-allow-origin"] == "*"
    preflight = client.options(
        "/api/ask",
        headers={
            "Origin": "https://blog.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]


def test_cors_errors_carry_the_header_too(client: TestClient) -> None:
    response = client.get("/api/ask", params={"q": " "}, headers={"Origin": "https://x.example"})
    assert response.status_code == 422
    assert response.headers["access-control-allow-origin"] == "*"


def test_cors_origins_are_configurable(
    seed_index: Path, searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARACITE_CORS_ORIGINS", "https://blog.example, https://docs.example")
    settings = Settings(index=seed_index)
    assert settings.cors_origins == ["https://blog.example", "https://docs.example"]
    with TestClient(create_app(settings, searcher)) as strict:
        allowed = strict.get("/healthz", headers={"Origin": "https://docs.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://docs.example"
        other = strict.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_api_paths_are_the_api_and_the_health_check() -> None:
    for path in ("/api", "/api/", "/api/ask", "/api/documents/a.txt", "/healthz"):
        assert is_api_path(path), path
    for path in ("/", "/ask", "/apis", "/api-docs", "/doc/api/x", "/healthz/x", "/static/a.js"):
        assert not is_api_path(path), path


def test_the_api_root_answers_json_errors_other_sites_can_read(client: TestClient) -> None:
    response = client.get("/api", headers={"Origin": "https://blog.example"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["access-control-allow-origin"] == "*"


def test_pages_are_not_cross_origin(client: TestClient) -> None:
    response = client.get("/", headers={"Origin": "https://blog.example"})
    assert "access-control-allow-origin" not in response.headers


# -- escaping ----------------------------------------------------------------------------------


def test_json_carries_document_text_verbatim_as_json(mixed_client: TestClient) -> None:
    """JSON is data: the text stays as written, and it is never served as HTML."""
    response = mixed_client.get("/api/search", params={"q": "script tag browser code", "k": 3})
    assert response.headers["content-type"] == "application/json"
    assert any(SCRIPT in passage["text"] for passage in response.json()["passages"])
    document = mixed_client.get("/api/documents/" + quote(ODD_DOC))
    assert document.status_code == 200
    assert document.json()["doc_id"] == ODD_DOC
    assert (
        document.json()["url"]
        == "/doc/nested/odd%20name%20%3Cimg%20src%3Dx%20onerror%3Dalert%282%29%3E.txt"
    )


@pytest.mark.parametrize("path", ["/api/ask", "/api/search"])
def test_an_unknown_doc_filter_is_a_declared_404(client: TestClient, path: str) -> None:
    response = client.get(path, params={"q": "trust", "doc": "no-such-document.txt"})
    assert response.status_code == 404
    assert "no-such-document.txt" in str(error_of(response)["message"])
    operations = client.get("/openapi.json").json()["paths"][path]
    for method in ("get", "post") if path == "/api/ask" else ("get",):
        assert "404" in operations[method]["responses"], method
