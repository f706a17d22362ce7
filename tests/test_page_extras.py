"""The small things a search page is expected to have: an icon, what was searched, and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from server_helpers import SEED_QUESTION

from indexer.models import IndexStats
from server.views import age, index_summary

pytest_plugins = ["server_helpers"]

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ago", "said"),
    [
        (timedelta(seconds=20), "just now"),
        (timedelta(minutes=1, seconds=30), "1 minute ago"),
        (timedelta(minutes=5), "5 minutes ago"),
        (timedelta(hours=2, minutes=59), "2 hours ago"),
        (timedelta(days=3), "3 days ago"),
    ],
)
def test_age_reads_as_a_person_says_it(ago: timedelta, said: str) -> None:
    assert age((NOW - ago).isoformat(timespec="seconds"), NOW) == said


def test_age_of_an_unreadable_timestamp_is_the_timestamp() -> None:
    assert age("sometime", NOW) == "sometime"


def test_index_summary_counts_documents_and_paragraphs() -> None:
    stats = IndexStats(
        path="/x", model="m", backend="b", dimension=3, documents=1, passages=2, sentences=5,
        built_at=(NOW - timedelta(minutes=5)).isoformat(), format_version=1, chunking={},
    )  # fmt: skip
    summary = index_summary(stats, 1200, NOW)
    assert (summary.text, summary.age) == ("1 document · 1,200 paragraphs", "5 minutes ago")


def test_results_say_what_was_searched_and_when_it_was_indexed(client: TestClient) -> None:
    documents = client.get("/api/documents").json()["documents"]
    paragraphs = sum(document["paragraphs"] for document in documents)
    built_at = client.get("/healthz").json()["built_at"]
    page = client.get("/", params={"q": SEED_QUESTION}).text
    assert f"Searched {len(documents)} documents · {paragraphs} paragraphs, indexed" in page
    assert f'<time datetime="{built_at}"' in page


def test_every_page_has_an_icon_and_the_slash_shortcut(client: TestClient) -> None:
    for path in ("/", f"/?q={SEED_QUESTION}", "/embed"):
        page = client.get(path).text
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
        assert '<script src="/static/keys.js" defer></script>' in page
    for path in ("/favicon.ico", "/static/favicon.svg"):
        icon = client.get(path)
        assert icon.status_code == 200
        assert icon.headers["content-type"].startswith("image/svg+xml")
        assert icon.text.startswith("<svg")
