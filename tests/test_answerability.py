"""Honest silence: documents on the subject that do not hold the asked fact give no answer."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cache_helpers import built_index, fixture_cache
from fastapi.testclient import TestClient
from server_helpers import SEED_QUESTION

from indexer.answerability import (
    COEFFICIENTS,
    MAX_CHOICE_MARGIN,
    MIN_CONFIDENCE,
    AnswerEvidence,
    choice_spread,
    confidence,
    coverage,
    logistic,
    logit,
    missing_share,
    phrase_coverage,
    question_names,
    question_numbers,
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
    choice_margin=0.8,
    choice_evenness=0.7,
    sentence_names_missing=0.0,
    passage_names_missing=0.0,
    numbers_missing=0.0,
    dense_squared=0.01,
)


def test_every_feature_has_a_fitted_coefficient() -> None:
    assert set(COEFFICIENTS) == set(AnswerEvidence.names())
    assert 0 < MIN_CONFIDENCE < 1


def test_confidence_is_a_probability_that_rises_with_the_evidence() -> None:
    base = confidence(EVIDENCE)
    assert 0 < base < 1
    for better in (
        replace(EVIDENCE, dense=0.3),
        replace(EVIDENCE, sentence_rare_coverage=1.0, phrase_coverage=1.0),
        replace(EVIDENCE, passage_margin=0.3),
        replace(EVIDENCE, choice_margin=2.0, choice_evenness=0.3),
        replace(EVIDENCE, dense_squared=0.09),
    ):
        assert confidence(better) > base
    for worse in (
        replace(EVIDENCE, type_missing=1.0),
        replace(EVIDENCE, sentence_names_missing=1.0, passage_names_missing=1.0),
        replace(EVIDENCE, numbers_missing=1.0),
    ):
        assert confidence(worse) < base
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


def test_choice_spread_is_the_lead_and_the_evenness_of_the_choice() -> None:
    margin, evenness = choice_spread(2.0, [0.0, 0.0])
    assert margin == 2.0
    # The softmax's entropy over its largest (log 3 for three sentences).
    p = math.exp(2) / (math.exp(2) + 2)
    q = (1 - p) / 2
    assert evenness == pytest.approx(-(p * math.log(p) + 2 * q * math.log(q)) / math.log(3))
    # Three alike: no lead, perfectly even; one far ahead: capped lead, nearly no evenness.
    assert choice_spread(1.0, [1.0, 1.0]) == pytest.approx((0.0, 1.0))
    far = choice_spread(100.0, [0.0, 0.0])
    assert far[0] == MAX_CHOICE_MARGIN and far[1] == pytest.approx(0.0, abs=1e-9)
    # The evenness does not grow with the number of sentences alike.
    assert choice_spread(1.0, [1.0] * 30)[1] == pytest.approx(1.0)
    # Nothing to compare with: the capped lead, nothing even.
    assert choice_spread(5.0, []) == (MAX_CHOICE_MARGIN, 0.0)


def test_question_names_are_its_capitalised_words_but_the_first() -> None:
    question = "When did the Harwick Lighthouse get its Fresnel lens? Who built it?"
    assert question_names(question) == ["harwick", "lighthouse", "fresnel"]
    assert question_names("Who designed the tower?") == []
    assert question_names("Which ship did Olsen-Berg name?") == ["olsen-berg"]


def test_question_numbers_are_its_digits() -> None:
    assert question_numbers("What happened in 1872 to the 1,200 tonnes and 3.5 metres?") == [
        "1872",
        "1,200",
        "3.5",
    ]
    assert question_numbers("How many ships were wrecked?") == []


def test_missing_share_counts_what_the_text_lacks() -> None:
    assert missing_share(["harwick", "tamsin"], "The Harwick Lighthouse") == 0.5
    assert missing_share(["1872"], "It was built in 1872.") == 0.0
    assert missing_share([], "anything") == 0.0


def test_a_name_or_number_the_documents_lack_lowers_the_confidence(harwick: Searcher) -> None:
    # The same question about the lighthouse, with a name and a year the document never uses.
    plain = harwick.ask("How tall is the Harwick tower?").assessment
    renamed = harwick.ask("How tall is the Harwick tower of Pellmore?").assessment
    dated = harwick.ask("How tall was the Harwick tower in 1935?").assessment
    assert plain is not None and renamed is not None and dated is not None
    assert plain.evidence.passage_names_missing == plain.evidence.numbers_missing == 0
    assert renamed.evidence.passage_names_missing > 0 and dated.evidence.numbers_missing == 1
    assert renamed.confidence < plain.confidence and dated.confidence < plain.confidence


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


@pytest.mark.parametrize("probability", [0.01, 0.19, 0.5, 0.93])
def test_logit_is_the_inverse_of_logistic(probability: float) -> None:
    assert logistic(logit(probability)) == pytest.approx(probability)
    assert (logit(probability) > 0) is (probability > 0.5)


def test_logit_of_certainty_is_finite() -> None:
    assert math.isfinite(logit(0.0)) and math.isfinite(logit(1.0))
    assert logit(0.0) < logit(0.01) and logit(1.0) > logit(0.99)
