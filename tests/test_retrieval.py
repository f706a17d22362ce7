"""Questions about the seeds land on the right paragraph, with an honest answer or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer import retrieval
from indexer.embedding import Embedder
from indexer.errors import InvalidQuery
from indexer.models import NO_ANSWER_MESSAGE
from indexer.retrieval import Searcher

PLAIN_SEED = "004_fc6fad951788ea23.txt"
MARKDOWN_SEED = "000_230d891a6c421cf7.txt"


def _paragraph_text(searcher: Searcher, doc_id: str, number: int) -> str:
    view = searcher.document(doc_id)
    return next(b.text for b in view.blocks if b.number == number)


def test_author_question_cites_the_paragraph_naming_the_author(searcher: Searcher) -> None:
    result = searcher.ask("Who wrote the article about Trump's tough love on Kim?")
    assert result.answer is not None
    assert result.answer.doc_id == MARKDOWN_SEED
    assert "Imran Khalid" in _paragraph_text(searcher, MARKDOWN_SEED, result.answer.paragraph)


def test_count_question_cites_the_paragraph_saying_54(searcher: Searcher) -> None:
    result = searcher.ask("How many documents were examined between 2024 and March 2025?")
    assert result.answer is not None
    assert result.answer.doc_id == PLAIN_SEED
    assert "54 documents" in result.answer.text
    top = result.hits[0].passage
    assert (top.doc_id, top.paragraph) == (PLAIN_SEED, 6)


def test_distrust_question_answers_from_the_eai_paper(searcher: Searcher) -> None:
    result = searcher.ask("Why does Kim Jong Un distrust the United States?")
    assert result.answer is not None
    assert result.answer.doc_id == PLAIN_SEED
    assert "trust" in result.answer.text


def test_answer_span_points_at_the_sentence_in_the_source(searcher: Searcher) -> None:
    result = searcher.ask("What does the Acheson Line symbolize for South Koreans?")
    answer = result.answer
    assert answer is not None and "Acheson" in answer.text
    source = searcher.document(answer.doc_id).source
    raw = source[answer.char_start : answer.char_end]
    assert "Acheson Line" in raw and "symbolizes a deeply rooted wartime trauma" in raw
    hit = result.hits[answer.passage - 1]
    assert hit.best_sentence is not None
    assert hit.passage.text[hit.best_sentence.start : hit.best_sentence.end] == answer.text


def test_off_topic_question_gets_no_answer_but_still_lists_passages(searcher: Searcher) -> None:
    result = searcher.ask("What is the boiling point of mercury?")
    assert result.answer is None
    assert result.no_answer_reason == NO_ANSWER_MESSAGE
    assert result.hits


@pytest.mark.parametrize(
    "question",
    ["How do I bake sourdough bread?", "Who won the 1998 football World Cup?", "x" * 1000, "■"],
)
def test_other_off_topic_questions_get_no_answer(searcher: Searcher, question: str) -> None:
    assert searcher.ask(question).answer is None


def test_lexical_search_finds_a_rare_name(searcher: Searcher) -> None:
    for mode in ("hybrid", "bm25"):
        top = searcher.search("Acheson Line", mode=mode).hits[0]  # type: ignore[arg-type]
        assert top.passage.doc_id == MARKDOWN_SEED and "Acheson" in top.passage.text


def test_search_returns_passages_without_choosing_an_answer(searcher: Searcher) -> None:
    result = searcher.search("Vladivostok summit", k=3)
    assert result.answer is None and result.no_answer_reason is None
    assert len(result.hits) == 3
    assert [h.rank for h in result.hits] == [1, 2, 3]
    assert "Vladivostok" in result.hits[0].passage.text


@pytest.mark.parametrize(
    ("query", "k", "message"),
    [
        ("", 5, "empty"),
        ("   ", 5, "empty"),
        ("x" * 1001, 5, "1000"),
        ("ok", 0, "k"),
        ("ok", 51, "k"),
    ],
)
def test_invalid_questions_are_refused(
    searcher: Searcher, query: str, k: int, message: str
) -> None:
    with pytest.raises(InvalidQuery, match=message):
        searcher.ask(query, k)


RANKING_QUESTIONS = (
    "How many documents were examined between 2024 and March 2025?",
    "Why does Kim Jong Un distrust the United States?",
    "What does the Acheson Line symbolize for South Koreans?",
)


def test_few_candidates_keep_the_scores_and_the_top_passage_of_every_candidate(
    searcher: Searcher, seed_index: Path, embedder: Embedder
) -> None:
    """With every passage a candidate the ranking is exact; with 3 per signal, the passages
    fused keep their exact scores, and the best passage stays first."""
    passages = searcher.stats().passages
    assert retrieval.CANDIDATES >= passages
    limited = Searcher(seed_index, embedder, candidates_per_signal=3)
    try:
        for question in RANKING_QUESTIONS:
            exact = {p.row: p.score for p in searcher.rank(question, "hybrid", passages)}
            assert len(exact) == passages
            few = limited.rank(question, "hybrid", 3)
            assert len(few) == 3
            for passage in few:
                assert passage.score == pytest.approx(exact[passage.row], rel=1e-6)
            assert few[0].row == max(exact, key=lambda row: exact[row])
            assert limited.ask(question).hits[0].passage == searcher.ask(question).hits[0].passage
    finally:
        limited.close()


def test_rank_orders_passages_as_search_does(searcher: Searcher) -> None:
    for question in RANKING_QUESTIONS:
        ranked = searcher.rank(question, "hybrid", 10)
        hits = searcher.search(question, k=10).hits
        assert [p.doc_id for p in ranked] == [h.passage.doc_id for h in hits]
        assert [p.score for p in ranked] == pytest.approx([h.score for h in hits])
