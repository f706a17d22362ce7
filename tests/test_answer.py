"""indexer/answer.py directly: what a question asks for, and whether a sentence has it."""

from __future__ import annotations

import pytest
from cache_helpers import built_index, fixture_cache

from indexer.answer import (
    AnswerType,
    expected_answer_type,
    has_new_answer_of_type,
    is_authorship_question,
)
from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.retrieval import Searcher
from indexer.settings import Settings


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many moons does Mars have?", "number"),
        ("how much water does the tank hold?", "number"),
        ("How much did the bridge cost?", "money"),
        ("How long is the Nile?", "number"),
        ("How old was she when she died?", "number"),
        ("What percentage of voters turned out?", "number"),
        ("When did the Korean War end?", "date"),
        ("In what year was the university founded?", "date"),
        ("Which year saw the first flight?", "date"),
        ("The treaty was signed in which century?", "date"),
        ("Who founded the company?", "person"),
        ("To whom did she write?", "person"),
        ("Whose idea was the bridge?", "person"),
        ("Why does Kim Jong Un distrust the United States?", None),
        ("What is the Acheson Line?", None),
        ("Where is Rottnest Island?", None),
    ],
)
def test_expected_answer_type_follows_the_question_word(
    question: str, kind: AnswerType | None
) -> None:
    assert expected_answer_type(question) == kind


def test_a_count_wins_over_the_question_word_it_contains() -> None:
    # "how many" asks for a number even in a "who" question.
    assert expected_answer_type("Who knows how many people came?") == "number"


@pytest.mark.parametrize(
    ("kind", "sentence", "question", "expected"),
    [
        ("number", "About 160,000 vehicles cross it each day.", "How many cars cross it?", True),
        ("number", "Three ships were lost.", "How many ships were lost?", True),
        ("number", "Some ships were lost.", "How many ships were lost?", False),
        # The number is already in the question: it is not an answer.
        ("number", "Of the 11 countries, 4 signed.", "How many of the 11 countries signed?", True),
        ("number", "All 11 countries were there.", "How many of the 11 countries came?", False),
        ("date", "The war ended in 1953.", "When did the Korean War end?", True),
        ("date", "It opened in March after a delay.", "When did it open?", True),
        ("date", "It opened in the 19th century.", "When did it open?", True),
        ("date", "It opened after a long delay.", "When did it open?", False),
        ("date", "The war ended in 1953.", "What happened in 1953 when the war ended?", False),
        ("person", "The bridge was designed by John Bradfield.", "Who designed it?", True),
        ("person", "The bridge was designed by an engineer.", "Who designed it?", False),
        ("person", "It was designed by John Bradfield.", "Did John Bradfield design it?", False),
    ],
)
def test_has_new_answer_of_type_needs_something_the_question_lacks(
    kind: AnswerType, sentence: str, question: str, expected: bool
) -> None:
    assert has_new_answer_of_type(kind, sentence, question) is expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Who wrote the article about tough love?", True),
        ("who authored this report?", True),
        ("Who is the author of the paper on Kim?", True),
        ("What are the authors of the study arguing?", True),
        ("Was it written by a diplomat?", True),
        ("Whose essay is about the Acheson Line?", True),
        ("Who distrusts the United States?", False),
        ("What did the author argue about sanctions?", False),
        ("Why does Kim Jong Un distrust the United States?", False),
    ],
)
def test_is_authorship_question(question: str, expected: bool) -> None:
    assert is_authorship_question(question) is expected


BRIDGE = """Harbour Bridge

The Harbour Bridge opened to traffic in the spring, after years of work. The Harbour Bridge \
opened to traffic in 1932, after years of work. Its arch is made of steel.

The bridge was designed by John Bradfield. The bridge carries trains and cars. About 160,000 \
vehicles cross the bridge each day.
"""


@pytest.fixture(scope="module")
def bridge_searcher(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Searcher:
    docs = tmp_path_factory.mktemp("bridge-docs")
    (docs / "bridge.txt").write_text(BRIDGE, encoding="utf-8")
    index_dir = built_index(
        fixture_cache(request.config),
        "bridge-index",
        tmp_path_factory.mktemp("bridge-index") / "idx",
        lambda target: build_index(docs, Settings(index=target), embedder=embedder),
    )
    return Searcher.open(index_dir, embedder)


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        # Both sentences are nearly the same; only the one with a date answers "when".
        (
            "When did the Harbour Bridge open to traffic?",
            "The Harbour Bridge opened to traffic in 1932, after years of work.",
        ),
        ("Who designed the bridge?", "The bridge was designed by John Bradfield."),
        (
            "How many vehicles cross the bridge?",
            "About 160,000 vehicles cross the bridge each day.",
        ),
    ],
)
def test_the_answer_holds_the_kind_of_answer_the_question_asks_for(
    bridge_searcher: Searcher, question: str, answer: str
) -> None:
    result = bridge_searcher.ask(question, k=2)
    assert result.answer is not None
    assert result.answer.text == answer
