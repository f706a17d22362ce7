"""Which sentence of the best passages answers: a small fitted model over each sentence's signals.

Every sentence of the passages the answer stage considers is described by a few signals
known at question time: its cosine and BM25 with the question, its passage's fused score and
how much of the question's rare terms the passage holds, whether it holds the kind of short
answer the question asks for, how much of the question's rare terms it holds (word for word,
and crediting near words: "purchased" for "bought", by the bundled model's static word
vectors, `indexer.word_vectors`), the same together with the sentence before it (the answer
often sits in the sentence after the one naming the subject: "Donald Davies ... developed
the same message routing methodology. He called it packet switching, and proposed to build
a nationwide network"), how close its words are to the question's as bags of static
vectors, and how many terms it adds to the question's. Its score is a weighted sum of them
and the best-scoring sentence is the answer. The weights are fitted, not chosen:
`eval/fit_sentence_choice.py` fits a softmax over each question's candidate sentences of
SQuAD v1.1 dev part A (label: the sentence holds a gold answer), checks it by
cross-validation over articles, and prints the constants below. Other signals (passage rank,
plain and phrase coverage, the question's rarest term, position in the passage, the
neighbours' cosines, the lead over the passage's best cosine, a pronoun at the start,
per-type short-answer flags, the short answer's distance to the question's words, products
of the strongest signals) were measured and left out: none moved the held-out accuracy by
more than 0.3 points (eval/reports/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.answer import AnswerType, expected_answer_type
from indexer.answerability import weighted_coverage
from indexer.models import Passage
from indexer.short_answer import ShortAnswerType, find_short_span, short_answer_type
from indexer.text import content_words, lexical_terms, stems
from indexer.word_vectors import WordVectors, bundled_word_vectors

FEATURES: tuple[str, ...] = (
    "dense",  # the sentence's cosine with the question
    "lexical",  # its BM25 over the best sentence BM25 of the searched documents
    "passage",  # its passage's fused score
    "passage_coverage",  # share of the question terms' rarity weight its passage holds
    "short_found",  # it holds a name, date, number, amount or place the question asks for
    # Share of the question words' rarity weight it holds: a word counts 1 when the sentence
    # holds its stem, else the cosine of its nearest word in the sentence.
    "soft_coverage",
    "context_coverage",  # the same over it and the sentence before it together
    "closeness",  # cosine of its words and the question's (static vectors, as bags)
    "new_terms",  # log(1 + its terms that are not the question's): room for an answer
    "length",  # log(1 + its terms)
)
# Fitted by eval/fit_sentence_choice.py on SQuAD v1.1 dev part A (onnx-int8, standalone
# sentence vectors); see eval/reports/sentence-choice.json for the fit and its cross-validation.
COEFFICIENTS: dict[str, float] = {
    "dense": 2.4145,
    "lexical": 1.5857,
    "passage": 6.9726,
    "passage_coverage": -0.9293,
    "short_found": 1.8831,
    "soft_coverage": 1.1218,
    "context_coverage": 2.4061,
    "closeness": 1.8756,
    "new_terms": 1.0257,
    "length": -0.8406,
}
_WEIGHTS = np.array([COEFFICIENTS[name] for name in FEATURES], dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class ChoiceContext:
    """What the features need to know about the question, computed once per question."""

    question: str
    terms: list[str]  # the question's distinct lexical terms
    rarity: dict[str, float]  # each term's rarity among the top passages (`rarity_weights`)
    answer_type: AnswerType | None
    short_type: ShortAnswerType | None
    words: QuestionWords

    @classmethod
    def of(
        cls,
        question: str,
        terms: list[str],
        rarity: dict[str, float],
        word_vectors: WordVectors | None = None,
    ) -> ChoiceContext:
        """The context of a question, with its answer types read from its wording (word
        vectors: the bundled model's unless given)."""
        vectors = word_vectors or bundled_word_vectors()
        return cls(
            question,
            terms,
            rarity,
            expected_answer_type(question),
            short_answer_type(question),
            QuestionWords.of(question, rarity, vectors),
        )


@dataclass(frozen=True, slots=True, eq=False)
class WordMatches:
    """How the sentences of a passage meet the question's words, one row per sentence."""

    # Per question word: 1 when the sentence holds its stem, else the cosine of its nearest
    # word in the sentence (0 when the sentence has no words).
    matches: np.ndarray
    # Cosine between the question's words (rarity-weighted) and the sentence's, as bags.
    closeness: np.ndarray


@dataclass(frozen=True, slots=True, eq=False)
class QuestionWords:
    """The question's distinct content words, with their stems, rarity weights and vectors."""

    stems: list[str]
    weights: np.ndarray  # each word's stem's rarity weight
    vectors: np.ndarray  # unit rows (float32)
    centroid: np.ndarray  # the rarity-weighted sum of the rows
    word_vectors: WordVectors

    @classmethod
    def of(cls, question: str, rarity: dict[str, float], vectors: WordVectors) -> QuestionWords:
        """The words of `question`, weighted by `rarity` (0 for a stem it does not weigh)."""
        words = list(dict.fromkeys(content_words(question)))
        word_stems = stems(words)
        weights = np.array([rarity.get(stem, 0.0) for stem in word_stems], dtype=np.float64)
        rows = vectors.vectors(words)
        return cls(word_stems, weights, rows, weights.astype(np.float32) @ rows, vectors)

    def match(self, sentences: list[list[str]], terms: list[set[str]]) -> WordMatches:
        """How each sentence (its content words and their stems) meets the question."""
        distinct = list(dict.fromkeys(word for words in sentences for word in words))
        column = {word: at for at, word in enumerate(distinct)}
        rows = self.word_vectors.vectors(distinct)
        matches = np.array(
            [[stem in held for stem in self.stems] for held in terms], dtype=np.float64
        ).reshape(len(sentences), len(self.stems))
        closeness = np.zeros(len(sentences))
        # Each sentence's distinct words, one run after another, for one reduction over all.
        runs = [list(dict.fromkeys(column[word] for word in words)) for words in sentences]
        worded = [at for at, run in enumerate(runs) if run]
        if worded and len(self.stems):
            flat = np.concatenate([runs[at] for at in worded])
            starts = np.cumsum([0] + [len(runs[at]) for at in worded[:-1]])
            cosines = (self.vectors @ rows.T)[:, flat]
            nearest = np.maximum.reduceat(cosines, starts, axis=1).T
            matches[worded] = np.maximum(matches[worded], nearest)
            sums = np.add.reduceat(rows[flat], starts, axis=0)
            norms = np.linalg.norm(sums, axis=1) * float(np.linalg.norm(self.centroid))
            dots = sums @ self.centroid
            closeness[worded] = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
        return WordMatches(matches, closeness)

    def coverage(self, matches: np.ndarray) -> np.ndarray:
        """Share of the question words' weight each row of `matches` credits (1 when the
        question has no weight)."""
        total = float(self.weights.sum())
        if total <= 0:
            return np.ones(len(matches))
        return np.asarray(matches @ self.weights) / total


def passage_features(
    context: ChoiceContext,
    passage: Passage,
    passage_score: float,
    dense: np.ndarray,
    lexical: np.ndarray,
) -> np.ndarray:
    """One row of `FEATURES` per sentence of `passage` (`dense`, `lexical`: its sentences')."""
    question_terms = set(context.terms)
    words = [content_words(sentence.text) for sentence in passage.sentences]
    sequences = [stems(sentence_words) for sentence_words in words]
    terms = [set(sequence) for sequence in sequences]
    found = context.words.match(words, terms)
    with_previous = found.matches.copy()
    with_previous[1:] = np.maximum(found.matches[1:], found.matches[:-1])
    passage_terms = set(lexical_terms(passage.title)).union(*terms)
    short = [
        context.short_type is not None
        and find_short_span(context.short_type, sentence.text, context.question) is not None
        for sentence in passage.sentences
    ]
    columns: dict[str, np.ndarray | float] = {
        "dense": dense,
        "lexical": lexical,
        "passage": passage_score,
        "passage_coverage": weighted_coverage(context.rarity, passage_terms),
        "short_found": np.array(short, dtype=np.float64),
        "soft_coverage": context.words.coverage(found.matches),
        "context_coverage": context.words.coverage(with_previous),
        "closeness": found.closeness,
        "new_terms": np.log1p([len(held - question_terms) for held in terms]),
        "length": np.log1p([len(sequence) for sequence in sequences]),
    }
    rows = np.zeros((len(passage.sentences), len(FEATURES)), dtype=np.float64)
    for at, name in enumerate(FEATURES):
        rows[:, at] = columns[name]
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
