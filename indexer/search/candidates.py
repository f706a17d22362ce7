"""The candidate stage: the passages worth comparing sentence by sentence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from indexer.lexical import LexicalIndex, LexicalScores
from indexer.ranking import RowScores, top_k
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
        passage_query = self.lexical.match(query.terms)
        sentence_query = self.sentence_lexical.match(query.terms)
        passage_matches: LexicalScores = passage_query
        sentence_matches: LexicalScores = sentence_query
        if query.allowed is not None:
            # Only the allowed rows count, the best score (the normaliser) too.
            passages = passage_query.every()
            passage_matches = passages.only(query.allowed.contains(passages.rows))
            sentences = sentence_query.every()
            holding_rows = self._passages_of(sentences.rows)
            sentence_matches = sentences.only(query.allowed.contains(holding_rows))
        dense = self.passage_vectors.search(query.vector, n, within=query.allowed)
        lexical = passage_matches.top(n)
        best_sentences = sentence_matches.top(n)
        pool_rows = np.union1d(dense.rows, lexical.rows)
        pool = self.with_rows(query, pool_rows, passage_matches, sentence_matches, dense)
        keep = np.sort(top_k(self.partial(query, pool), n))
        kept = _subset(pool, keep)
        if query.mode == "dense" or len(best_sentences) == 0:
            return kept
        extra = np.setdiff1d(self._passages_of(best_sentences.rows), kept.rows)
        if len(extra) == 0:
            return kept
        return _union(kept, self.with_rows(query, extra, passage_matches, sentence_matches))

    def _passages_of(self, sentence_rows: np.ndarray) -> np.ndarray:
        """The passage row holding each sentence row."""
        holding = np.searchsorted(self.sentence_offsets, sentence_rows, side="right") - 1
        return holding.astype(np.int64)

    def with_rows(
        self,
        query: Query,
        rows: np.ndarray,
        lexical_matches: LexicalScores,
        sentence_matches: LexicalScores,
        dense_known: RowScores | None = None,
    ) -> Candidates:
        """Candidates made of exactly these passage rows (any order; duplicates dropped).

        Dense scores already known for some rows (exact, from a search) are reused.
        """
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        dense = _scores_of(rows, dense_known, lambda r: self.passage_vectors.score(query.vector, r))
        lexical = lexical_matches.score(rows)
        best = lexical_matches.best()
        if best > 0:
            lexical = lexical / np.float32(best)
        return Candidates(
            rows,
            dense.astype(np.float32),
            lexical.astype(np.float32),
            lexical_matches,
            sentence_matches,
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


def _subset(candidates: Candidates, positions: np.ndarray) -> Candidates:
    return replace(
        candidates,
        rows=candidates.rows[positions],
        dense=candidates.dense[positions],
        lexical=candidates.lexical[positions],
    )


def _union(first: Candidates, second: Candidates) -> Candidates:
    """Two disjoint sets of candidates as one, in ascending row order."""
    rows = np.concatenate([first.rows, second.rows])
    order = np.argsort(rows, kind="stable")
    return replace(
        first,
        rows=rows[order],
        dense=np.concatenate([first.dense, second.dense])[order],
        lexical=np.concatenate([first.lexical, second.lexical])[order],
    )


def _scores_of(
    rows: np.ndarray, known: RowScores | None, score: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """The score of each of the sorted `rows`: known ones looked up, the others computed."""
    out = np.zeros(len(rows), dtype=np.float32)
    missing = np.ones(len(rows), dtype=bool)
    if known is not None and len(known):
        at = np.searchsorted(rows, known.rows)
        inside = at < len(rows)
        at, values, found = at[inside], known.scores[inside], known.rows[inside]
        match = rows[at] == found
        out[at[match]] = values[match]
        missing[at[match]] = False
    if missing.any():
        out[missing] = score(rows[missing])
    return out
