"""LiveIndex follows newly published generations; questions in flight finish on the old one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_helpers import ORCHARD

from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.errors import IndexCorrupt, IndexNotFound
from indexer.live import LiveIndex
from indexer.retrieval import Searcher
from indexer.settings import Settings
from indexer.store import CURRENT


class CountingOpener:
    """Opens searchers as the server does, and remembers each one."""

    def __init__(self) -> None:
        self.opened: list[Searcher] = []

    def __call__(self, index_dir: Path, embedder: Embedder | None) -> Searcher:
        searcher = Searcher.open(index_dir, embedder)
        self.opened.append(searcher)
        return searcher


@pytest.fixture
def settings(docs: Path, tmp_path: Path, embedder: Embedder) -> Settings:
    """An index of `docs`, built once before the test."""
    built = Settings(index=tmp_path / "index")
    build_index(docs, built, embedder=embedder)
    return built


@pytest.fixture
def live(settings: Settings, embedder: Embedder) -> Iterator[LiveIndex]:
    opened = LiveIndex(settings.index, CountingOpener(), embedder)
    yield opened
    opened.close()


def _doc_ids(searcher: Searcher) -> set[str]:
    return {info.doc_id for info in searcher.documents()}


def test_a_published_generation_is_picked_up_and_the_model_reused(
    docs: Path, settings: Settings, embedder: Embedder
) -> None:
    opener = CountingOpener()
    live = LiveIndex(settings.index, opener, embedder)
    with live.searcher() as first:
        assert _doc_ids(first) == {"lighthouse.txt"}
    with live.searcher() as again:
        assert again is first
    assert len(opener.opened) == 1  # nothing published: nothing re-opened

    (docs / "orchard.txt").write_text(ORCHARD, encoding="utf-8")
    build_index(docs, settings, embedder=embedder)
    with live.searcher() as second:
        assert second is not first
        assert _doc_ids(second) == {"lighthouse.txt", "orchard.txt"}
        top = second.ask("How many kinds of apples grow in the orchard?").hits[0]
        assert top.passage.doc_id == "orchard.txt"
        assert second.embedder is embedder
    assert len(opener.opened) == 2
    live.close()


def test_a_question_in_flight_finishes_on_the_generation_it_started_with(
    docs: Path, settings: Settings, live: LiveIndex, embedder: Embedder
) -> None:
    with live.searcher() as old:
        (docs / "orchard.txt").write_text(ORCHARD, encoding="utf-8")
        build_index(docs, settings, embedder=embedder)
        with live.searcher() as new:
            assert _doc_ids(new) == {"lighthouse.txt", "orchard.txt"}
        # still open and still answering from the generation it opened
        assert _doc_ids(old) == {"lighthouse.txt"}
        assert old.ask("When is the lamp lit?").hits
    with pytest.raises(Exception, match="closed"):
        old.documents()  # closed once its last question finished


def test_a_removed_index_fails_every_question_until_one_is_back(
    docs: Path, settings: Settings, live: LiveIndex, embedder: Embedder
) -> None:
    with live.searcher() as searcher:
        assert _doc_ids(searcher) == {"lighthouse.txt"}

    shutil.rmtree(settings.index)
    with pytest.raises(IndexNotFound):
        with live.searcher():
            pass

    build_index(docs, settings, embedder=embedder)
    with live.searcher() as back:
        assert _doc_ids(back) == {"lighthouse.txt"}


def test_a_broken_pointer_fails_questions_instead_of_serving_an_old_generation(
    settings: Settings, live: LiveIndex
) -> None:
    live.current()
    (settings.index / CURRENT).write_text("gen-that-does-not-exist\n", encoding="utf-8")
    with pytest.raises(IndexCorrupt):
        live.current()
