"""The fusion stage: one score per candidate from its passage and its best sentence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.search.types import Candidates, Fused, Query
from indexer.vectors import VectorIndex


@dataclass(frozen=True, slots=True)
class FusionWeights:
    """How the signals are combined into one passage score (measured on SQuAD part A).

    A passage scores by its own embedding, its best sentence (embedding plus that
    sentence's BM25), and its BM25 over title + section + text. BM25 scores are divided
    by the query's best BM25 score so that they sit on the same 0..1 scale as cosines.
    """

    passage: float = 0.4
    sentence: float = 0.3
    lexical: float = 0.2
    sentence_lexical: float = 0.3


class FusionStage:
    """Scores candidates by their signals, reading only the candidates' sentence vectors."""

    def __init__(
        self,
        sentence_vectors: VectorIndex,
        sentence_offsets: np.ndarray,
        weights: FusionWeights,
    ) -> None:
        self.sentence_vectors = sentence_vectors
        self.sentence_offsets = sentence_offsets
        self.weights = weights

    def run(self, query: Query, candidates: Candidates) -> Fused:
        """The fused score of every candidate, and the scores of its sentences."""
        rows = candidates.rows
        first = np.asarray(self.sentence_offsets[rows], dtype=np.int64)
        counts = np.asarray(self.sentence_offsets[rows + 1], dtype=np.int64) - first
        start = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=start[1:])
        # The candidates' sentence rows, one passage after another.
        sentence_rows = np.repeat(first - start[:-1], counts) + np.arange(start[-1])
        dense = self.sentence_vectors.score(query.vector, sentence_rows).astype(np.float32)
        lexical = candidates.sentence_matches.score(sentence_rows)
        if candidates.sentence_lexical_best > 0:
            lexical = lexical / np.float32(candidates.sentence_lexical_best)
        lexical = lexical.astype(np.float32)
        w = self.weights
        if query.mode == "bm25":
            scores = candidates.lexical
        elif query.mode == "dense":
            best_dense = _best_per_passage(dense, start)
            scores = (w.passage * candidates.dense + w.sentence * best_dense) / (
                w.passage + w.sentence
            )
        else:
            best_sentence = _best_per_passage(dense + w.sentence_lexical * lexical, start)
            partial = w.passage * candidates.dense + w.lexical * candidates.lexical
            scores = partial + w.sentence * best_sentence
        return Fused(
            rows,
            np.asarray(scores, dtype=np.float32),
            start,
            dense,
            lexical,
            candidates.dense,
            candidates.lexical,
        )


def _best_per_passage(values: np.ndarray, start: np.ndarray) -> np.ndarray:
    if len(values) == 0:
        return np.zeros(len(start) - 1, dtype=np.float32)
    return np.asarray(np.maximum.reduceat(values, start[:-1]), dtype=np.float32)
