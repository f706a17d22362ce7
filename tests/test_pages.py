"""The server-rendered pages: home, results, document pages, embed, errors, and escaping."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from server_helpers import (
    ESCAPED_SCRIPT,
    EVIL_DOC,
    EVIL_QUESTION,
    EVIL_TITLE,
    ODD_DOC,
    SCRIPT,
    SEED_QUESTION,
)

from indexer.models import DocumentBlock
from server.views import Highlighted, _cut, example_queries, locate_span, parse_span

pytest_plugins = ["server_helpers"]

ALTERNATE = re.compile(r'<link rel="alternate" type="application/json" href="([^"]+)">')


def alternate_of(html: str) -> str:
    match = ALTERNATE.search(html)
    assert match, "every page links its JSON twin"
    return unescape(match[1])


def marks(html: str) -> list[str]:
    return [unescape(text) for text in re.findall(r"<mark>(.*?)</mark>", html, re.DOTALL)]


# -- home and results --------------------------------------------------------------------------


def test_home_shows_search_box_collection_and_examples(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<meta name="viewport"' in html
    assert 'name="q"' in html and 'action="/"' in html
    documents = client.get("/api/documents").json()["documents"]
    for document in documents:
        assert quote(document["doc_id"]) in html
        assert f"{document['paragraphs']} ¶" in html
    assert "Will Trump’s ‘tough love’ on Kim yield results or backfire?" in html
    examples = re.findall(r'<a href="/\?q=[^"]+">(.*?)</a>', html)
    assert examples, "example questions link to their results"
    assert alternate_of(html) == "/api/documents"


def test_empty_query_is_the_home_page(client: TestClient) -> None:
    assert "The collection" in client.get("/?q=").text


def test_results_show_the_answer_with_citations_and_passages(client: TestClient) -> None:
    response = client.get("/", params={"q": SEED_QUESTION})
    assert response.status_code == 200
    html = response.text
    data = client.get(alternate_of(html)).json()  # the JSON twin is /api/ask
    assert data["query"] == SEED_QUESTION
    answer = data["answer"]
    assert unescape(html).count(answer["text"]) >= 1
    cite = re.search(r'<a class="cite" href="([^"]+)"[^>]*>\[(\d+)\]</a>', html)
    assert cite, "the answer carries a [n] citation"
    assert unescape(cite[1]) == answer["url"]
    assert int(cite[2]) == answer["passage"]
    for passage in data["passages"]:
        assert f'id="r{passage["rank"]}"' in html
        assert f"¶{passage['paragraph']}" in html
        assert unescape(passage["url"]) in unescape(html)
        if passage["section"]:
            assert passage["section"] in unescape(html)
    highlighted = {p["text"][p["answer_start"] : p["answer_end"]] for p in data["passages"]
                   if p["answer_start"] is not None}  # fmt: skip
    assert highlighted and highlighted <= set(marks(html))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("   ", "the question is empty"),
        ("x" * 1001, "longer than 1000"),
    ],
)
def test_bad_question_on_a_page_is_a_422_page(client: TestClient, query: str, message: str) -> None:
    response = client.get("/", params={"q": query})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert message in response.text
    assert f'name="q" value="{query}"' in response.text  # the question, to try again


@pytest.mark.parametrize("k", ["0", "51", "many"])
def test_bad_k_on_a_page_is_a_422_page(client: TestClient, k: str) -> None:
    response = client.get("/", params={"q": "trust", "k": k})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    # The page says what the JSON twin says, and that message is about k.
    message = client.get("/api/ask", params={"q": "trust", "k": k}).json()["error"]["message"]
    assert message.startswith("k") and message != "k"
    assert message in unescape(response.text)


# -- document pages ----------------------------------------------------------------------------


def test_document_page_numbers_and_anchors_every_paragraph(client: TestClient) -> None:
    for listed in client.get("/api/documents").json()["documents"]:
        response = client.get(listed["url"])
        assert response.status_code == 200
        html = response.text
        numbers = [int(n) for n in re.findall(r'<div class="para[^"]*" id="p(\d+)">', html)]
        assert numbers == list(range(1, listed["paragraphs"] + 1))
        assert alternate_of(html) == "/api/documents/" + quote(listed["doc_id"])
        assert unescape(listed["title"]) in unescape(html)


def test_copy_citation_carries_title_paragraph_and_url(client: TestClient) -> None:
    listed = client.get("/api/documents").json()["documents"][0]
    html = client.get(listed["url"]).text
    citations = [unescape(c) for c in re.findall(r'data-citation="([^"]+)"', html)]
    urls = re.findall(r'data-url="([^"]+)"', html)
    assert len(citations) == len(urls) == listed["paragraphs"]
    assert citations[6] == f"{listed['title']}, ¶7"
    # Relative (document.js makes it absolute against the page's address), never the Host.
    assert urls[6] == "/doc/" + quote(listed["doc_id"]) + "#p7"
    assert '<script src="/static/document.js" defer></script>' in html


def test_arriving_from_a_citation_highlights_paragraph_and_sentence(client: TestClient) -> None:
    """Every cited passage, Markdown and plain text alike, marks exactly its sentence."""
    data = client.get("/api/ask", params={"q": SEED_QUESTION, "k": 10}).json()
    checked = 0
    for passage in data["passages"]:
        if passage["answer_start"] is None:
            continue
        html = client.get(passage["url"]).text
        cited = re.findall(r'<div class="para cited" id="p(\d+)">', html)
        assert cited == [str(passage["paragraph"])]
        sentence = passage["text"][passage["answer_start"] : passage["answer_end"]]
        assert marks(html) == [sentence]
        checked += 1
    assert checked >= 3


def test_markdown_link_text_is_highlighted_without_its_markup(client: TestClient) -> None:
    data = client.get(
        "/api/search", params={"q": "acknowledgment of North Korea as a nuclear power"}
    )
    passage = next(p for p in data.json()["passages"] if p["doc_id"].startswith("000_"))
    html = client.get(passage["url"]).text
    sentence = passage["text"][passage["answer_start"] : passage["answer_end"]]
    assert marks(html) == [sentence]
    assert "](" not in sentence


def test_bad_highlight_is_ignored(client: TestClient) -> None:
    listed = client.get("/api/documents").json()["documents"][0]
    for hl in ("junk", "50-10", "99999999-999999999", "-5-3"):
        response = client.get(listed["url"], params={"hl": hl})
        assert response.status_code == 200
        assert "<mark>" not in response.text


def test_unknown_document_is_a_404_page(client: TestClient) -> None:
    response = client.get("/doc/missing.txt")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "missing.txt" in response.text
    assert "Not found" in response.text


@pytest.mark.parametrize(
    "path", ["/doc/..%2F..%2Fpyproject.toml", "/doc/%2e%2e/%2e%2e/etc/passwd", "/doc/../../x"]
)
def test_doc_ids_in_page_urls_cannot_escape_the_index(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "[project]" not in response.text and "root:" not in response.text


def test_unknown_page_is_an_html_404(client: TestClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert 'name="q" value=""' in response.text  # an empty search box: no question was asked


def test_a_wrong_method_on_a_page_is_an_html_405_naming_the_allowed_methods(
    client: TestClient,
) -> None:
    response = client.post("/")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["allow"] == "GET, HEAD"


# -- embed -------------------------------------------------------------------------------------


def test_embed_page_can_be_framed_and_links_out(client: TestClient) -> None:
    empty = client.get("/embed")
    assert empty.status_code == 200
    assert 'action="/embed"' in empty.text
    response = client.get("/embed", params={"q": SEED_QUESTION})
    assert response.status_code == 200
    assert "x-frame-options" not in response.headers
    assert "frame-ancestors" not in response.headers.get("content-security-policy", "")
    links = re.findall(r'<a class="passage-title" href="([^"]+)"', response.text)
    assert links and all(link.startswith("/doc/") for link in links)
    assert '<base target="_blank">' in response.text
    assert alternate_of(response.text).startswith("/api/ask?")


# -- escaping ----------------------------------------------------------------------------------


def assert_escaped(html: str) -> None:
    assert SCRIPT not in html
    assert "<img src=x" not in html
    assert ESCAPED_SCRIPT in html


def test_home_escapes_titles_and_ids(mixed_client: TestClient) -> None:
    html = mixed_client.get("/").text
    assert_escaped(html)
    assert "/doc/" + quote(ODD_DOC) in html


def test_results_escape_document_text_and_the_question(mixed_client: TestClient) -> None:
    html = mixed_client.get("/", params={"q": EVIL_QUESTION}).text
    assert_escaped(html)
    assert unescape(html).count(SCRIPT) >= 2  # shown as text, in title and passage
    html = mixed_client.get("/", params={"q": f"what is {SCRIPT}?"}).text
    assert_escaped(html)


def test_document_page_escapes_text_title_and_citation(mixed_client: TestClient) -> None:
    html = mixed_client.get("/doc/" + EVIL_DOC).text
    assert_escaped(html)
    assert f"<title>{EVIL_TITLE.replace('<', '&lt;').replace('>', '&gt;')} · paracite" in html
    odd = mixed_client.get("/doc/" + quote(ODD_DOC))
    assert odd.status_code == 200
    assert "<img src=x" not in odd.text
    assert "&lt;img src=x onerror=alert(2)&gt;" in odd.text


def test_embed_and_error_pages_escape(mixed_client: TestClient) -> None:
    assert_escaped(mixed_client.get("/embed", params={"q": EVIL_QUESTION}).text)
    missing = mixed_client.get("/doc/" + quote(SCRIPT))
    assert missing.status_code == 404
    assert_escaped(missing.text)
    bad = mixed_client.get("/", params={"q": f"{SCRIPT} trust", "k": "0"})
    assert bad.status_code == 422
    assert_escaped(bad.text)


# -- presentation helpers ----------------------------------------------------------------------


def test_parse_span_accepts_only_a_forward_pair() -> None:
    assert parse_span("12-40") == (12, 40)
    assert parse_span(None) is None
    for bad in ("", "40-12", "7-7", "a-b", "1-2-3", "-1-4", "12"):
        assert parse_span(bad) is None


def test_locate_span_maps_source_offsets_into_stripped_markdown() -> None:
    source = "Intro.\n\nYet [the **nuclear** power](https://x.example/a b) shift. Next one.\n"
    text = "Yet the nuclear power shift. Next one."
    start = source.index("Yet")
    block = DocumentBlock("paragraph", 1, None, None, text, start, len(source) - 1)
    sentence = (start, source.index(" Next"))
    local = locate_span(block, source, sentence)
    assert local is not None
    assert text[local[0] : local[1]] == "Yet the nuclear power shift."


def test_locate_span_on_plain_text_is_a_slice() -> None:
    source = "One. Two three. Four."
    block = DocumentBlock("paragraph", 1, None, None, source, 0, len(source))
    assert locate_span(block, source, (5, 15)) == (5, 15)
    assert _cut(source, 5, 15) == Highlighted("One. ", "Two three.", " Four.")


def test_example_queries_prefer_questions_then_headings() -> None:
    examples = example_queries(
        ["Annual report 2024", "Will rates rise?"],
        ["I. Prospects for the Economy", "III. Conclusion", "2.1) How we measured growth?"],
    )
    assert examples == ["Will rates rise?", "How we measured growth?", "Prospects for the Economy"]
