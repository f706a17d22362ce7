"""Honest silence: documents on the subject that do not hold the asked fact give no answer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cache_helpers import built_index, fixture_cache
from fastapi.testclient import TestClient
from server_helpers import SEED_QUESTION

from indexer.answerability import (
    COEFFICIENTS,
    MIN_CONFIDENCE,
    AnswerEvidence,
    confidence,
    coverage,
    phrase_coverage,
    rarity_weights,
    weighted_coverage,
)
from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.evaluation import Outcome, answerability_curve, unit_key
from indexer.models import NO_ANSWER_MESSAGE, NOT_ANSWERED_MESSAGE
from indexer.retrieval import Searcher
from indexer.settings import Settings
from server.app import create_app

# One document about a lighthouse: it says how tall it is and how far its light carries,
# and nothing about shipwrecks, visitors or who painted it.
HARWICK = """The Harwick Lighthouse

The Harwick Lighthouse stands on a granite headland at the mouth of the Tamsin estuary. \
It was built in 1872 by the engineer Margaret Olsen, who designed its tapering stone tower.

The tower is 38 metres tall and its lantern holds a rotating Fresnel lens. The light \
flashes white every ten seconds and can be seen from 22 nautical miles away.

Storms often batter the headland in winter. Waves have broken windows of the keeper's \
cottage several times, and the stone walls were repaired after the great gale.

The lighthouse was automated and no longer needs a keeper. Today the cottage is a small \
museum about the history of the estuary and its shipwrecks.
"""
ANSWERED = "How far away can the Harwick light be seen?"
SILENT = "How many ships were wrecked near the Harwick Lighthouse?"
OFF_TOPIC = "What is the boiling point of liquid nitrogen in kelvin?"


@pytest.fixture(scope="module")
def harwick_index(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Path:
    folder = tmp_path_factory.mktemp("harwick")
    (folder / "docs").mkdir()
    (folder / "docs" / "harwick.txt").write_text(HARWICK, encoding="utf-8")
    return built_index(
        fixture_cache(request.config),
        "harwick-index",
        folder / "index",
        lambda target: build_index(folder / "docs", Settings(index=target), embedder=embedder),
    )


@pytest.fixture(scope="module")
def harwick(harwick_index: Path, embedder: Embedder) -> Iterator[Searcher]:
    searcher = Searcher.open(harwick_index, embedder)
    yield searcher
    searcher.close()


# -- the decision ------------------------------------------------------------------------------


def test_a_question_the_document_answers_keeps_its_answer(harwick: Searcher) -> None:
    result = harwick.ask(ANSWERED)
    assert result.answer is not None and result.no_answer_reason is None
    assert "22 nautical miles" in result.answer.text
    assert result.assessment is not None and result.assessment.answered
    assert result.answer.confidence == result.assessment.confidence
    assert harwick.min_confidence <= result.answer.confidence < 1
    assert result.hits[result.answer.passage - 1].cited


def test_a_fact_the_document_lacks_gets_no_answer_but_related_passages(harwick: Searcher) -> None:
    result = harwick.ask(SILENT)
    assert result.answer is None
    assert result.no_answer_reason == NOT_ANSWERED_MESSAGE != NO_ANSWER_MESSAGE
    assert result.hits  # the closest passages are still listed...
    assert not any(hit.cited for hit in result.hits)  # ...as related, not as sources
    assert all(hit.best_sentence is None for hit in result.hits)
    assessment = result.assessment
    assert assessment is not None and not assessment.answered
    assert 0 < assessment.confidence < harwick.min_confidence


def test_off_topic_questions_keep_their_own_reason(harwick: Searcher) -> None:
    result = harwick.ask(OFF_TOPIC)
    assert result.answer is None and result.assessment is None
    assert result.no_answer_reason == NO_ANSWER_MESSAGE


def test_the_answer_follows_its_confidence_and_the_threshold(
    harwick_index: Path, harwick: Searcher, embedder: Embedder
) -> None:
    silent = harwick.ask(SILENT).assessment
    answered = harwick.ask(ANSWERED).assessment
    assert silent is not None and answered is not None
    assert silent.confidence < answered.confidence
    # The same candidates, judged against other thresholds: offered exactly when at or above.
    for threshold in (0.0, silent.confidence, answered.confidence, 0.9999):
        searcher = Searcher.open(harwick_index, embedder, min_confidence=threshold)
        try:
            for question, assessment in ((SILENT, silent), (ANSWERED, answered)):
                result = searcher.ask(question)
                assert result.assessment is not None
                assert result.assessment.confidence == pytest.approx(assessment.confidence)
                assert (result.answer is not None) == (assessment.confidence >= threshold)
                if result.answer is not None:
                    assert result.answer.text == assessment.candidate.text
        finally:
            searcher.close()


def test_the_judgement_does_not_depend_on_how_many_passages_are_shown(
    harwick: Searcher, searcher: Searcher
) -> None:
    for questions, index in (((ANSWERED, SILENT), harwick), ((SEED_QUESTION,), searcher)):
        for question in questions:
            default = index.ask(question).assessment
            assert default is not None
            for k in (1, 2, 12, 50):
                other = index.ask(question, k=k).assessment
                assert other is not None
                if k < default.candidate.passage:
                    # The default answer's passage is not shown: it is offered from one that is.
                    assert other.candidate.passage <= k
                    continue
                assert other.candidate.passage == default.candidate.passage
                assert other.confidence == pytest.approx(default.confidence)


def test_search_and_later_pages_are_not_judged(harwick: Searcher) -> None:
    searched = harwick.search(SILENT)
    assert searched.answer is None and searched.no_answer_reason is None
    assert searched.assessment is None
    assert harwick.ask(ANSWERED, k=1, offset=1).assessment is None


# -- the model ---------------------------------------------------------------------------------

EVIDENCE = AnswerEvidence(
    dense=0.1,
    lexical=0.8,
    passage=0.6,
    sentence_coverage=0.5,
    passage_coverage=0.6,
    sentence_rare_coverage=0.4,
    passage_rare_coverage=0.5,
    phrase_coverage=0.3,
    type_found=0.0,
    type_missing=0.0,
    margin=0.05,
    passage_margin=0.05,
    dense_gap=0.0,
    passage_lexical=1.0,
)


def test_every_feature_has_a_fitted_coefficient() -> None:
    assert set(COEFFICIENTS) == set(AnswerEvidence.names())
    assert 0 < MIN_CONFIDENCE < 1


def test_confidence_is_a_probability_that_rises_with_the_evidence() -> None:
    base = confidence(EVIDENCE)
    assert 0 < base < 1
    for better in (
        replace(EVIDENCE, dense=0.3),
        replace(EVIDENCE, sentence_coverage=1.0, sentence_rare_coverage=1.0),
        replace(EVIDENCE, passage_margin=0.3),
    ):
        assert confidence(better) > base
    assert confidence(replace(EVIDENCE, type_missing=1.0)) < base
    extreme = replace(EVIDENCE, dense=1e6)
    assert confidence(extreme) <= 1 and confidence(replace(extreme, dense=-1e6)) >= 0
    assert confidence(EVIDENCE, {"dense": 0.0}, 0.0) == 0.5


def test_coverage_counts_the_question_terms_found() -> None:
    assert coverage(["tower", "tall"], {"tower", "lens"}) == 0.5
    assert coverage([], {"tower"}) == 1.0
    weights = rarity_weights(["tower", "shipwreck"], [{"tower"}, {"tower", "shipwreck"}])
    assert weights["shipwreck"] > weights["tower"]  # held by fewer of the top passages
    assert weighted_coverage(weights, {"shipwreck"}) > 0.5 > weighted_coverage(weights, {"tower"})
    assert weighted_coverage({}, set()) == 1.0


def test_phrase_coverage_wants_question_pairs_close_together() -> None:
    question = ["lantern", "lens", "rotat"]
    assert phrase_coverage(question, ["rotat", "lens", "lantern"]) == 1.0
    assert phrase_coverage(question, ["lantern", "a", "b", "c", "d", "lens"]) == 0.0
    assert phrase_coverage(["lens"], []) == 1.0


# -- evaluation --------------------------------------------------------------------------------


def test_the_curve_trades_answered_questions_for_withheld_ones() -> None:
    gold = {unit_key("a.txt", 1): 1}

    def outcome(confidence: float | None, withheld: float | None, correct: bool) -> Outcome:
        return Outcome(
            "q",
            "q",
            gold,
            (),
            1.0,
            ("x",),
            answered_withheld=withheld is not None,
            confidence=confidence,
            confidence_withheld=withheld,
            candidate_correct=correct,
        )

    outcomes = [outcome(0.9, 0.1, True), outcome(0.5, 0.6, False), outcome(None, None, False)]
    curve = answerability_curve(outcomes, (0.0, 0.3, 0.7, 0.95))
    # Rates over all questions (4 decimals); accuracy among the answered only.
    assert [point["answered"] for point in curve] == [0.6667, 0.6667, 0.3333, 0.0]
    assert [point["answered_withheld"] for point in curve] == [0.6667, 0.3333, 0.0, 0.0]
    assert [point["answer_accuracy_answered"] for point in curve] == [0.5, 0.5, 1.0, None]


# -- what people see ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(harwick: Searcher) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(index=harwick.index_dir), searcher=harwick)) as test_client:
        yield test_client


def test_api_and_pages_show_the_confidence_and_the_new_reason(client: TestClient) -> None:
    answered = client.get("/api/ask", params={"q": ANSWERED}).json()
    assert 0 < answered["answer"]["confidence"] < 1
    silent = client.get("/api/ask", params={"q": SILENT}).json()
    assert silent["answer"] is None
    assert silent["no_answer_reason"] == NOT_ANSWERED_MESSAGE
    assert silent["passages"] and not any(p["cited"] for p in silent["passages"])
    assert all(p["answer_start"] is None for p in silent["passages"])

    page = client.get("/", params={"q": ANSWERED}).text
    assert f"{answered['answer']['confidence'] * 100:.0f}% sure" in page
    page = client.get("/", params={"q": SILENT}).text
    assert NOT_ANSWERED_MESSAGE in page and "Closest passages" in page and "Sources" not in page
    embedded = client.get("/embed", params={"q": SILENT}).text
    assert NOT_ANSWERED_MESSAGE in embedded
