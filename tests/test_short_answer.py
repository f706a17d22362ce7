"""The short answer: the date, number, amount, name or place inside the answer sentence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cache_helpers import built_index, fixture_cache

from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.evaluation import exact_match, f1_score, normalize_answer
from indexer.retrieval import Searcher
from indexer.settings import Settings
from indexer.short_answer import (
    ShortAnswerType,
    find_short_span,
    short_answer_type,
    source_span,
)

DOCUMENTS = {
    "lighthouse.txt": (
        "The Old Lighthouse\n\n"
        "The lighthouse at Pointe Saint-Mathieu was built in 1835 and automated in 1996.\n\n"
        "In 2019 the lantern room was restored. The glazing was replaced with laminated glass "
        "panels made in Brest. The repair cost 41,000 euros. The works took four months.\n\n"
        "The tower has 163 steps from the door to the gallery.\n"
    ),
    "cafe.md": (
        "# Café de la Gare\n\n"
        "The café stands opposite the railway station and serves **breakfast** from six.\n\n"
        "Its *owner*, Josée Lefèvre, opened it in 1962. She ran it for thirty years.\n"
    ),
}


@pytest.fixture(scope="module")
def searcher(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[Searcher]:
    folder = tmp_path_factory.mktemp("short-docs")
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    index_dir = tmp_path_factory.mktemp("short-index") / "idx"
    built_index(
        fixture_cache(request.config),
        "short-answer-index",
        index_dir,
        lambda target: build_index(folder, Settings(index=target), embedder=embedder),
    )
    opened = Searcher.open(index_dir, embedder)
    yield opened
    opened.close()


@pytest.mark.parametrize(
    ("question", "short"),
    [
        ("When was the lighthouse at Pointe Saint-Mathieu built?", "1835"),
        ("How many steps does the tower have?", "163"),
        ("How much did the lantern room repair cost?", "41,000 euros"),
        ("Who opened the café?", "Josée Lefèvre"),
    ],
)
def test_the_short_answer_points_into_the_source(
    searcher: Searcher, question: str, short: str
) -> None:
    answer = searcher.ask(question).answer
    assert answer is not None and answer.short is not None
    assert answer.short.text == short
    view = searcher.document(answer.doc_id)
    assert view.source[answer.short.start : answer.short.end] == short
    # Inside the answer sentence, which is where `offset` says.
    assert answer.char_start <= answer.short.start < answer.short.end <= answer.char_end
    assert answer.text[answer.short.offset : answer.short.offset + len(short)] == short
    assert answer.to_dict()["short"] == {
        "text": short,
        "start": answer.short.start,
        "end": answer.short.end,
    }


def test_a_question_without_a_typed_answer_has_no_short_answer(searcher: Searcher) -> None:
    answer = searcher.ask("Why was the lantern room restored with laminated glass?").answer
    assert answer is not None
    assert answer.short is None
    assert answer.to_dict()["short"] is None


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Who opened the café?", "person"),
        ("When was the tower built?", "date"),
        ("How many steps are there?", "number"),
        ("How much did the repair cost?", "money"),
        ("Where was the glass made?", "place"),
        ("In which city was the glass made?", "place"),
        ("Why was it restored?", None),
        ("What is the lantern room?", None),
    ],
)
def test_short_answer_type_follows_the_question(
    question: str, kind: ShortAnswerType | None
) -> None:
    assert short_answer_type(question) == kind


@pytest.mark.parametrize(
    ("kind", "sentence", "question", "expected"),
    [
        ("date", "The treaty was signed on October 3, 1962 in Vienna.", "When was it signed?",
         "October 3, 1962"),
        ("date", "Built in 1835, it was automated in 1996.", "When was it automated?", "1996"),
        ("number", "About 3.5 million people live there.", "How many people live there?",
         "3.5 million"),
        ("money", "Tickets cost $12 in 2019.", "How much did tickets cost?", "$12"),
        ("person", "The Prize went to Marie Curie in 1911.", "Who won the Prize?", "Marie Curie"),
        ("place", "The glass was made in Brest by Saint-Gobain.", "Where was the glass made?",
         "Brest"),
    ],
)  # fmt: skip
def test_find_short_span_picks_the_new_thing_next_to_the_question_words(
    kind: ShortAnswerType, sentence: str, question: str, expected: str
) -> None:
    span = find_short_span(kind, sentence, question)
    assert span is not None and sentence[span[0] : span[1]] == expected


def test_find_short_span_skips_what_the_question_already_says() -> None:
    assert find_short_span("date", "It was built in 1835.", "Was it built in 1835?") is None


def test_source_span_finds_the_text_under_markup() -> None:
    source = "Its *owner*, Josée Lefèvre, opened it."
    text = "Its owner, Josée Lefèvre, opened it."
    local = (text.index("Josée"), text.index(",", 12))
    span = source_span(source, text, 0, len(source), local)
    assert span is not None and source[span[0] : span[1]] == "Josée Lefèvre"
    # Not verbatim in the source (markup inside it): no short answer rather than a wrong one.
    assert source_span("The **41,000** euros.", "The 41,000 euros.", 0, 21, (4, 16)) is None


def test_squad_normalisation_and_scores() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert exact_match("the Huguenots", ["Huguenots"]) == 1.0
    assert exact_match(None, ["Huguenots"]) == 0.0
    assert f1_score("in 1962 exactly", ["1962", "October 1962"]) == pytest.approx(0.5)
    assert f1_score("1835", ["1962"]) == 0.0
