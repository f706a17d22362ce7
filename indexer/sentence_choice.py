"""Which sentence of the best passages answers: a small fitted model over each sentence's signals.

Every sentence of the passages the answer stage considers is described by a few signals
known at question time (its cosine and BM25 with the question, its passage's fused score and
rank, how many of the question's terms and rare terms it holds, whether it holds the kind of
answer asked for, where it sits in its passage, its neighbours' cosines); its score is a
weighted sum of them, and the best-scoring sentence is the answer. The weights are fitted,
not chosen: `eval/fit_sentence_choice.py` fits a softmax over each question's candidate
sentences of SQuAD v1.1 dev part A (label: the sentence holds a gold answer), checked by
cross-validation over articles, and prints the constants below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from indexer.answer import AnswerType, expected_answer_type, has_new_answer_of_type
from indexer.answerability import coverage, phrase_coverage, weighted_coverage
from indexer.models import Passage
from indexer.short_answer import ShortAnswerType, find_short_span, short_answer_type
from indexer.text import lexical_terms

FEATURES: tuple[str, ...] = (
    "dense",
    "lexical",
    "passage",
    "first_passage",
    "passage_rank",
    "type_found",
    "short_found",
    "coverage",
    "rare_coverage",
    "phrase_coverage",
    "rarest_term",
    "new_terms",
    "first_sentence",
    "position",
    "length",
    "neighbour_dense",
    "dense_lead",
)


@dataclass(frozen=True, slots=True)
class ChoiceContext:
    """What the features need to know about the question, computed once per question."""

    question: str
    terms: list[str]  # the question's distinct lexical terms
    rarity: dict[str, float]  # each term's rarity among the top passages
    answer_type: AnswerType | None
    short_type: ShortAnswerType | None

    @classmethod
    def of(cls, question: str, terms: list[str], rarity: dict[str, float]) -> ChoiceContext:
        """The context of a question, with its answer types read from its wording."""
        return cls(
            question, terms, rarity, expected_answer_type(question), short_answer_type(question)
        )

    @property
    def rarest(self) -> str | None:
        """The question term held by the fewest top passages (None without terms)."""
        return max(self.rarity, key=lambda term: self.rarity[term]) if self.rarity else None


def passage_features(
    context: ChoiceContext,
    passage: Passage,
    rank: int,
    passage_score: float,
    dense: np.ndarray,
    lexical: np.ndarray,
) -> np.ndarray:
    """One row of `FEATURES` per sentence of `passage` (`dense`, `lexical`: its sentences')."""
    count = len(passage.sentences)
    rows = np.zeros((count, len(FEATURES)), dtype=np.float64)
    question_terms = set(context.terms)
    best_dense = float(dense.max()) if count else 0.0
    rarest = context.rarest
    for at, sentence in enumerate(passage.sentences):
        sequence = lexical_terms(sentence.text)
        terms = set(sequence)
        neighbours = [float(dense[j]) for j in (at - 1, at + 1) if 0 <= j < count]
        rows[at] = (
            float(dense[at]),
            float(lexical[at]),
            passage_score,
            float(rank == 1),
            1.0 / rank,
            float(
                context.answer_type is not None
                and has_new_answer_of_type(context.answer_type, sentence.text, context.question)
            ),
            float(
                context.short_type is not None
                and find_short_span(context.short_type, sentence.text, context.question) is not None
            ),
            coverage(context.terms, terms),
            weighted_coverage(context.rarity, terms),
            phrase_coverage(context.terms, sequence),
            float(rarest is not None and rarest in terms),
            math.log1p(len(terms - question_terms)),
            float(at == 0),
            at / max(1, count - 1),
            math.log1p(len(sequence)),
            max(neighbours, default=0.0),
            float(dense[at]) - best_dense,
        )
    return rows
