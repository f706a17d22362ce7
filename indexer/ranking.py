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


@dataclass(frozen=True, slots=True)
class RowRanges:
    """Passage rows as sorted, disjoint [start, end) ranges (a document's rows are one range)."""

    bounds: np.ndarray  # int64, shape (m, 2)

    @property
    def count(self) -> int:
        return int((self.bounds[:, 1] - self.bounds[:, 0]).sum()) if len(self.bounds) else 0

    def rows(self) -> np.ndarray:
        """Every row, ascending."""
        if not len(self.bounds):
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in self.bounds])

    def contains(self, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` fall inside the ranges (a boolean mask)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(self.bounds):
            return np.zeros(len(rows), dtype=bool)
        at = np.searchsorted(self.bounds[:, 0], rows, side="right") - 1
        inside = at >= 0
        inside[inside] = rows[inside] < self.bounds[at[inside], 1]
        return inside

    def without(self, excluded: np.ndarray) -> RowRanges:
        """These ranges less the sorted, disjoint [start, end) ranges `excluded`."""
        kept: list[tuple[int, int]] = []
        for begin, end in self.bounds:
            start = int(begin)
            for cut_start, cut_end in excluded:
                if cut_end <= start or cut_start >= end:
                    continue
                if cut_start > start:
                    kept.append((start, int(cut_start)))
                start = max(start, int(cut_end))
            if start < end:
                kept.append((start, int(end)))
        return RowRanges(np.array(kept, dtype=np.int64).reshape(-1, 2))

    def clipped(self, start: int, end: int) -> RowRanges:
        """The part of these ranges inside [start, end), shifted so that `start` is row 0."""
        bounds = np.clip(self.bounds, start, end) - start
        return RowRanges(bounds[bounds[:, 1] > bounds[:, 0]].reshape(-1, 2))

    def shifted(self, offset: int) -> RowRanges:
        """The same ranges with `offset` added to every row."""
        return RowRanges(self.bounds + offset)

    def slices(self, chunk: int) -> list[tuple[int, int]]:
        """The ranges cut into [start, end) pieces of at most `chunk` rows."""
        return [
            (start, min(start + chunk, int(end)))
            for begin, end in self.bounds
            for start in range(int(begin), int(end), chunk)
        ]
