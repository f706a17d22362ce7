"""Which sentence of the best passages answers: a small fitted model over each sentence's signals.

Every sentence of the passages the answer stage considers is described by a few signals
known at question time: its cosine and BM25 with the question, its passage's fused score,
whether it holds the kind of short answer the question asks for, how much of the question's
rare terms it holds, and how many terms it adds to the question's. Its score is a weighted
sum of them and the best-scoring sentence is the answer. The weights are fitted, not chosen:
`eval/fit_sentence_choice.py` fits a softmax over each question's candidate sentences of
SQuAD v1.1 dev part A (label: the sentence holds a gold answer), checks it by
cross-validation over articles, and prints the constants below. Other signals (passage rank,
plain and phrase coverage, the question's rarest term, position in the passage, the
neighbours' cosines, the lead over the passage's best cosine) were measured and left out:
none moved the held-out accuracy by more than 0.2 points (eval/reports/README.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from indexer.answer import AnswerType, expected_answer_type
from indexer.answerability import weighted_coverage
from indexer.models import Passage
from indexer.short_answer import ShortAnswerType, find_short_span, short_answer_type
from indexer.text import lexical_terms

FEATURES: tuple[str, ...] = (
    "dense",  # the sentence's cosine with the question
    "lexical",  # its BM25 over the best sentence BM25 of the searched documents
    "passage",  # its passage's fused score
    "short_found",  # it holds a name, date, number, amount or place the question asks for
    "rare_coverage",  # share of the question terms' rarity weight it holds
    "new_terms",  # log(1 + its terms that are not the question's): room for an answer
    "length",  # log(1 + its terms)
)
# Fitted by eval/fit_sentence_choice.py on SQuAD v1.1 dev part A (onnx-int8, standalone
# sentence vectors); see eval/reports/sentence-choice.json for the fit and its cross-validation.
COEFFICIENTS: dict[str, float] = {
    "dense": 3.0863,
    "lexical": 1.6273,
    "passage": 7.0442,
    "short_found": 1.9082,
    "rare_coverage": 2.2229,
    "new_terms": 0.8280,
    "length": -0.5626,
}
_WEIGHTS = np.array([COEFFICIENTS[name] for name in FEATURES], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class ChoiceContext:
    """What the features need to know about the question, computed once per question."""

    question: str
    terms: list[str]  # the question's distinct lexical terms
    rarity: dict[str, float]  # each term's rarity among the top passages (`rarity_weights`)
    answer_type: AnswerType | None
    short_type: ShortAnswerType | None

    @classmethod
    def of(cls, question: str, terms: list[str], rarity: dict[str, float]) -> ChoiceContext:
        """The context of a question, with its answer types read from its wording."""
        return cls(
            question, terms, rarity, expected_answer_type(question), short_answer_type(question)
        )


def passage_features(
    context: ChoiceContext,
    passage: Passage,
    passage_score: float,
    dense: np.ndarray,
    lexical: np.ndarray,
) -> np.ndarray:
    """One row of `FEATURES` per sentence of `passage` (`dense`, `lexical`: its sentences')."""
    rows = np.zeros((len(passage.sentences), len(FEATURES)), dtype=np.float64)
    question_terms = set(context.terms)
    for at, sentence in enumerate(passage.sentences):
        sequence = lexical_terms(sentence.text)
        terms = set(sequence)
        short = context.short_type is not None and (
            find_short_span(context.short_type, sentence.text, context.question) is not None
        )
        rows[at] = (
            float(dense[at]),
            float(lexical[at]),
            passage_score,
            float(short),
            weighted_coverage(context.rarity, terms),
            math.log1p(len(terms - question_terms)),
            math.log1p(len(sequence)),
        )
    return rows


def sentence_scores(
    context: ChoiceContext,
    passage: Passage,
    passage_score: float,
    dense: np.ndarray,
    lexical: np.ndarray,
) -> np.ndarray:
    """How well each sentence of `passage` answers (the higher, the likelier)."""
    return passage_features(context, passage, passage_score, dense, lexical) @ _WEIGHTS


def similarity_scores(passage_score: float, dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    """The model's score of each sentence from its passage, cosine and BM25 terms alone (the
    signals that need no reading of the sentence's text)."""
    passage = COEFFICIENTS["passage"] * passage_score
    similarity = COEFFICIENTS["dense"] * dense + COEFFICIENTS["lexical"] * lexical
    return passage + similarity.astype(np.float64)
