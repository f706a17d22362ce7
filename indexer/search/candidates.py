"""The candidate stage: the passages worth comparing sentence by sentence."""

from __future__ import annotations

import numpy as np

from indexer.lexical import LexicalIndex
from indexer.ranking import top_k
from indexer.search.types import Candidates, Query
from indexer.vectors import VectorIndex

# Passages whose sentences are compared with the question, per signal.
CANDIDATES = 200


class CandidateStage:
    """The best passages by their own embedding and BM25, and those holding the best
    sentences by BM25 (`per_signal` of each).

    The passages best by embedding and by BM25 are pooled and the `per_signal` best of the
    pool by the mode's passage-level score are kept: over the whole collection that is the
    same set, without scoring every passage.
    """

    def __init__(
        self,
        passage_vectors: VectorIndex,
        lexical: LexicalIndex,
        sentence_lexical: LexicalIndex,
        sentence_offsets: np.ndarray,
        passage_weight: float,
        lexical_weight: float,
        per_signal: int = CANDIDATES,
    ) -> None:
        self.passage_vectors = passage_vectors
        self.lexical = lexical
        self.sentence_lexical = sentence_lexical
        self.sentence_offsets = sentence_offsets
        self.passage_weight = passage_weight
        self.lexical_weight = lexical_weight
        self.per_signal = per_signal

    def run(self, query: Query, per_signal: int | None = None) -> Candidates:
        """The candidate passages of `query`, with their passage-level signals."""
        n = per_signal or self.per_signal
        dense = self.passage_vectors.search(query.vector, n)
        lexical = self.lexical.top(query.terms, n)
        sentences = self.sentence_lexical.top(query.terms, n)
        pool = self.with_rows(
            query,
            np.union1d(dense.rows, lexical.rows),
            lexical.best(),
            sentences.best(),
        )
        keep = np.sort(top_k(self.partial(query, pool), n))
        rows = pool.rows[keep]
        if query.mode != "dense" and len(sentences):
            holding = np.searchsorted(self.sentence_offsets, sentences.rows, side="right") - 1
            rows = np.union1d(rows, holding.astype(np.int64))
        return self.with_rows(query, rows, lexical.best(), sentences.best())

    def with_rows(
        self, query: Query, rows: np.ndarray, lexical_best: float, sentence_lexical_best: float
    ) -> Candidates:
        """Candidates made of exactly these passage rows (any order; duplicates dropped)."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        lexical = self.lexical.score(query.terms, rows)
        if lexical_best > 0:
            lexical = lexical / np.float32(lexical_best)
        return Candidates(
            rows,
            self.passage_vectors.score(query.vector, rows).astype(np.float32),
            lexical.astype(np.float32),
            lexical_best,
            sentence_lexical_best,
        )

    def partial(self, query: Query, candidates: Candidates) -> np.ndarray:
        """The passage-level score of each candidate in the query's mode."""
        if query.mode == "bm25":
            return candidates.lexical
        if query.mode == "dense":
            return candidates.dense
        return np.asarray(
            self.passage_weight * candidates.dense + self.lexical_weight * candidates.lexical,
            dtype=np.float32,
        )
