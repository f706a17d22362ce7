"""The lexical index: BM25 over pre-analysed terms (bm25s), scored from its postings.

bm25s stores, per term, the BM25 score of every row holding it (a CSC matrix). A question
is scored by reading the postings of its terms only, so the work grows with how many rows
hold those terms, not with the size of the collection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from indexer.errors import REBUILD_HINT, IndexCorrupt
from indexer.ranking import RowScores, best_of

# Anserini's BM25 parameters; on SQuAD part A they beat bm25s' defaults (1.5, 0.75).
BM25_K1 = 0.9
BM25_B = 0.4
# What bm25s saves in a lexical folder.
LEXICAL_FILES = (
    "params.index.json",
    "vocab.index.json",
    "data.csc.index.npy",
    "indices.csc.index.npy",
    "indptr.csc.index.npy",
)


@dataclass(frozen=True, slots=True)
class LexicalMatches:
    """The rows a query's terms occur in (ascending) and their BM25 scores: a question's
    lexical signal, computed once and read by every stage."""

    rows: np.ndarray  # int64, ascending
    scores: np.ndarray  # float32

    def top(self, n: int) -> RowScores:
        """The `n` best rows, best first."""
        if n <= 0 or len(self.rows) == 0:
            return RowScores.empty()
        return best_of(self.rows, self.scores, n)

    def score(self, rows: np.ndarray) -> np.ndarray:
        """The score of each of `rows` (0 where the terms do not occur), in their order."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=np.float32)
        if len(self.rows) == 0 or len(rows) == 0:
            return out
        at = np.minimum(np.searchsorted(self.rows, rows), len(self.rows) - 1)
        found = self.rows[at] == rows
        out[found] = self.scores[at[found]]
        return out

    def best(self) -> float:
        """The highest score, or 0.0 when no row matches."""
        return float(self.scores.max()) if len(self.scores) else 0.0

    def only(self, keep: np.ndarray) -> LexicalMatches:
        """The matches where `keep` (a mask over `rows`) is true."""
        return LexicalMatches(self.rows[keep], self.scores[keep])


class LexicalIndex:
    """BM25 over rows of terms: the best rows for a question, or the scores of given rows."""

    def __init__(self, bm25: bm25s.BM25 | None) -> None:
        self._bm25 = bm25
        # Plain views of the (memory-mapped) score matrix: no np.memmap bookkeeping per read.
        matrix = bm25.scores if bm25 is not None else {}
        self._indptr, self._indices, self._data = (
            np.asarray(matrix.get(name, np.zeros(1, dtype=np.int64)))
            for name in ("indptr", "indices", "data")
        )

    @classmethod
    def open(cls, path: Path, count: int) -> LexicalIndex:
        """The index over `count` rows saved at `path`, memory-mapped.

        An empty collection has no folder; for any other, a missing folder is IndexCorrupt.
        """
        check_lexical(path, count)
        if count == 0 and not path.exists():
            return cls(None)
        try:
            return cls(bm25s.BM25.load(str(path), mmap=True, show_progress=False))
        except (OSError, ValueError) as error:
            message = f"lexical index {path} is unreadable: {error}; {REBUILD_HINT}"
            raise IndexCorrupt(message) from error

    @staticmethod
    def write(path: Path, rows: list[list[str]]) -> None:
        """Index the rows' terms and save them at `path` (nothing for an empty collection)."""
        if rows:
            bm25 = bm25s.BM25(k1=BM25_K1, b=BM25_B)
            bm25.index(rows, show_progress=False)
            bm25.save(str(path), show_progress=False)

    def __len__(self) -> int:
        return 0 if self._bm25 is None else int(self._bm25.scores["num_docs"])

    def match(self, terms: list[str]) -> LexicalMatches:
        """Every row holding one of `terms`, with its BM25 score (from the terms' postings)."""
        rows, scores = self._postings(terms)
        if len(rows) == 0:
            return LexicalMatches(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        unique, slot = np.unique(rows, return_inverse=True)
        summed = np.bincount(slot.reshape(-1), weights=scores).astype(np.float32)
        return LexicalMatches(unique, summed)

    def top(self, terms: list[str], n: int) -> RowScores:
        """The `n` rows with the highest BM25 score for `terms`, best first (scores > 0)."""
        return self.match(terms).top(n)

    def score(self, terms: list[str], rows: np.ndarray) -> np.ndarray:
        """The BM25 score of `terms` for each of `rows`, in their order."""
        return self.match(terms).score(rows)

    def _postings(self, terms: list[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = list(self._term_postings(terms))
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return (
            np.concatenate([rows for rows, _ in parts]),
            np.concatenate([scores for _, scores in parts]),
        )

    def _term_postings(self, terms: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(rows, scores) of each distinct known term."""
        if self._bm25 is None:
            return []
        vocabulary = self._bm25.vocab_dict
        indptr, indices, data = self._indptr, self._indices, self._data
        postings = []
        for term in dict.fromkeys(terms):
            token = vocabulary.get(term)
            if token is None:
                continue
            start, end = int(indptr[token]), int(indptr[token + 1])
            postings.append(
                (
                    np.asarray(indices[start:end], dtype=np.int64),
                    np.asarray(data[start:end], dtype=np.float32),
                )
            )
        return postings


def check_lexical(path: Path, count: int) -> None:
    """IndexCorrupt unless `path` holds a bm25s index over `count` rows (files and params)."""
    if count == 0 and not path.exists():
        return  # an empty collection has no lexical index
    if not path.is_dir():
        raise IndexCorrupt(f"lexical index {path} is missing; {REBUILD_HINT}")
    missing = [name for name in LEXICAL_FILES if not (path / name).is_file()]
    if missing:
        raise IndexCorrupt(f"lexical index {path} lacks {', '.join(missing)}; {REBUILD_HINT}")
    try:
        params = json.loads((path / "params.index.json").read_text(encoding="utf-8"))
        documents = params["num_docs"]
    except (OSError, ValueError, TypeError, KeyError) as error:
        message = f"lexical index {path} is unreadable: {error}; {REBUILD_HINT}"
        raise IndexCorrupt(message) from error
    if documents != count:
        raise IndexCorrupt(
            f"lexical index {path} covers {documents} texts, not {count}; {REBUILD_HINT}"
        )
