"""The fitted sentence choice: which signals raise a sentence, and a sentence it now finds."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.models import Passage, Sentence
from indexer.retrieval import Searcher
from indexer.sentence_choice import FEATURES, ChoiceContext, passage_features, sentence_scores
from indexer.settings import Settings
from indexer.text import lexical_terms


def _passage(*sentences: str) -> Passage:
    parts, at = [], 0
    for text in sentences:
        parts.append(Sentence(text, at, at + len(text), at, at + len(text)))
        at += len(text) + 1
    text = " ".join(sentences)
    return Passage("doc.txt", "Doc", 1, None, None, text, 0, len(text), tuple(parts))


def _context(question: str, rarity: dict[str, float] | None = None) -> ChoiceContext:
    terms = list(dict.fromkeys(lexical_terms(question)))
    return ChoiceContext.of(question, terms, rarity or dict.fromkeys(terms, 1.0))


def test_the_features_describe_each_sentence() -> None:
    passage = _passage("The mill was rebuilt in 1921.", "The miller sold the mill to Anna Berg.")
    context = _context("Who bought the mill?")
    rows = passage_features(context, passage, 0.7, np.array([0.6, 0.5]), np.array([0.4, 1.0]))
    named = [dict(zip(FEATURES, row, strict=True)) for row in rows]
    assert [row["dense"] for row in named] == pytest.approx([0.6, 0.5])
    assert [row["passage"] for row in named] == [0.7, 0.7]
    assert [row["short_found"] for row in named] == [0.0, 1.0]  # a name the question lacks


def _evenly_scored(context: ChoiceContext, passage: Passage) -> np.ndarray:
    """The features of every sentence of `passage`, with the same cosine and BM25 fed in for
    each, so that only what the sentences say tells them apart."""
    even = np.full(len(passage.sentences), 0.5)
    return passage_features(context, passage, 0.7, even, even)


def _column(rows: np.ndarray, name: str) -> list[float]:
    return [float(value) for value in rows[:, FEATURES.index(name)]]


def test_a_near_word_is_credited_less_than_the_word_and_more_than_an_unrelated_one() -> None:
    passage = _passage(
        "The abbey was purchased in 1790.",
        "The abbey was bought in 1790.",
        "The abbey was painted in 1790.",
    )
    context = _context("When was the abbey bought?")
    rows = _evenly_scored(context, passage)
    purchased, bought, painted = _column(rows, "soft_coverage")
    assert bought == pytest.approx(1.0)  # every question word is there
    assert bought > purchased > painted


def test_a_synonym_of_the_question_word_raises_the_sentence() -> None:
    # Everything else equal (the same cosine, BM25, date and length): only the verb differs.
    passage = _passage("The abbey was painted in 1790.", "The abbey was purchased in 1790.")
    scores = sentence_scores(
        _context("When was the abbey bought?"), passage, 0.7, np.full(2, 0.5), np.full(2, 0.5)
    )
    assert scores[1] > scores[0]


def test_the_context_coverage_adds_the_sentence_before_and_only_it() -> None:
    passage = _passage(
        "Donald Davies developed packet switching in 1965.",
        "He proposed to build a nationwide network.",
        "The network was never built.",
    )
    context = _context("What did Davies propose after packet switching?")
    rows = _evenly_scored(context, passage)
    own = _column(rows, "soft_coverage")
    with_previous = _column(rows, "context_coverage")
    assert with_previous[0] == own[0]  # the first sentence has nothing before it
    assert with_previous[1] > own[1]  # "Davies", "packet switching" from the sentence before
    assert with_previous[1] > with_previous[2]  # not from two sentences back


def test_a_sentence_after_the_one_naming_the_subject_scores_higher() -> None:
    # The same sentence and scores fed in; the sentence before it names what is asked about.
    question = "What did Davies want to build with packet switching?"
    answer = "He proposed to build a nationwide network."
    after_subject = _passage("Donald Davies developed packet switching in 1965.", answer)
    after_other = _passage("Donald Davies grew up in Treorchy.", answer)
    context = _context(question)
    dense, lexical = np.array([0.5, 0.5]), np.array([0.5, 0.5])
    first = sentence_scores(context, after_subject, 0.7, dense, lexical)
    second = sentence_scores(context, after_other, 0.7, dense, lexical)
    assert first[1] > second[1]


def test_the_passage_coverage_is_the_passage_s_and_closeness_follows_the_topic() -> None:
    passage = _passage("The organ was restored in 1921.", "Lunch is served at noon.")
    context = _context("Who restored the church organ?", {"church": 0.1, "organ": 2.0})
    rows = _evenly_scored(context, passage)
    coverage = _column(rows, "passage_coverage")
    assert coverage[0] == coverage[1] == pytest.approx(2.0 / 2.1)  # "organ", not "church"
    closeness = _column(rows, "closeness")
    assert closeness[0] > closeness[1]


@pytest.mark.parametrize(
    ("question", "plain", "better"),
    [
        # The kind of answer asked for (a name), everything else equal in the scores fed in.
        (
            "Who restored the organ?",
            "The organ was restored by a parish.",
            "The organ was restored by Anna Berg.",
        ),
        # More of the question's rare terms ("organ" is rare, "church" is everywhere).
        ("Who restored the church organ?", "The church was restored.", "The organ was fixed."),
    ],
)
def test_a_sentence_with_more_of_what_is_asked_scores_higher(
    question: str, plain: str, better: str
) -> None:
    rarity = {"church": 0.1, "organ": 2.0, "restor": 1.0}
    scores = sentence_scores(
        _context(question, rarity),
        _passage(plain, better),
        0.7,
        np.array([0.5, 0.5]),
        np.array([0.5, 0.5]),
    )
    assert scores[1] > scores[0]


def test_a_closer_sentence_and_a_better_passage_score_higher() -> None:
    context = _context("When was the bridge opened?")
    passage = _passage("The bridge opened in 1932.", "The bridge opened in 1932.")
    closer = sentence_scores(context, passage, 0.7, np.array([0.5, 0.6]), np.array([0.5, 0.5]))
    assert closer[1] > closer[0]
    lower = sentence_scores(context, passage, 0.6, np.array([0.5, 0.6]), np.array([0.5, 0.5]))
    assert (closer > lower).all()


# A biography whose first sentence is the closest to the question by embedding alone, and
# whose second holds the answer and the question's rare term ("herbarium"). The hand-set
# score this model replaced (0.6 cosine + 0.2 BM25 + passage score) picked the first one.
LUTZ = (
    "Maria Lutz\n\nMaria Lutz (1802 - 1874) was an Austrian botanist, painter and teacher who "
    "spent her life in the Tyrol. Her herbarium, collected over forty years, was donated to the "
    "University of Innsbruck.\n"
)
OTHERS = {
    "grau.txt": (
        "Anselm Grau\n\nAnselm Grau (1480 - 1541) was a German bishop and theologian of the "
        "Reformation, and the first Protestant bishop of Weidenau. After banishing the "
        "Hollenstein Brethren, he faced a long quarrel with the town council.\n"
    ),
    "kessler.txt": (
        "Johann Kessler\n\nJohann Kessler was a Swiss reformer and chronicler who served as "
        "pastor in St. Gallen for most of his life. Having exiled the Anabaptist leader Conrad "
        "Wirth, he wrote a chronicle of the Reformation.\n"
    ),
}


@pytest.fixture(scope="module")
def biographies(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Searcher]:
    folder = tmp_path_factory.mktemp("biographies")
    docs = folder / "docs"
    docs.mkdir()
    (docs / "lutz.txt").write_text(LUTZ, encoding="utf-8")
    for name, text in OTHERS.items():
        (docs / name).write_text(text, encoding="utf-8")
    build_index(docs, Settings(index=folder / "index"), embedder=embedder)
    searcher = Searcher.open(folder / "index", embedder)
    yield searcher
    searcher.close()


def test_the_sentence_holding_the_rare_term_and_the_answer_is_chosen(
    biographies: Searcher,
) -> None:
    answer = biographies.ask("To which university was Lutz's herbarium given?").answer
    assert answer is not None
    assert answer.text == (
        "Her herbarium, collected over forty years, was donated to the University of Innsbruck."
    )


def test_highlights_do_not_depend_on_the_page_size_or_on_asking(biographies: Searcher) -> None:
    question = "To which university was Lutz's herbarium given?"
    full = biographies.ask(question, k=5).hits
    for k in (1, 2):
        for result in (biographies.search(question, k=k), biographies.ask(question, k=k)):
            assert [h.best_sentence for h in result.hits] == [h.best_sentence for h in full[:k]]
