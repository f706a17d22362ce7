"""Rows with scores, best first: what every index structure and search stage hands on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class RowScores:
    """Row ids of an index structure with their scores (best first when from a search)."""

    rows: np.ndarray  # int64
    scores: np.ndarray  # float32, one per row

    @classmethod
    def empty(cls) -> RowScores:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.rows)

    def best(self) -> float:
        """The highest score, or 0.0 when there is none."""
        return float(self.scores.max()) if len(self.scores) else 0.0


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the `k` highest scores, best first (ties by position when all are kept)."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top], kind="stable")]


def best_of(rows: np.ndarray, scores: np.ndarray, n: int) -> RowScores:
    """The `n` best of `rows` by `scores`, best first."""
    keep = top_k(scores, n)
    return RowScores(rows[keep].astype(np.int64), scores[keep].astype(np.float32))
