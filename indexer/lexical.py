"""The lexical index: BM25 over pre-analysed terms, scored from term-frequency postings.

Each segment of an index stores, per term, the rows holding it and how often (its postings),
and each row's length. A question is scored at search time from the postings of its terms
only, with the collection statistics (row count, mean length, document frequency) summed
over every segment: the scores are those of one BM25 index over all the rows, however the
rows are split into segments. Rows of deleted documents still count in the statistics until
their segment is merged away, as in Lucene.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.errors import REBUILD_HINT, IndexCorrupt
from indexer.ranking import RowRanges, RowScores, best_of

# Anserini's BM25 parameters; on SQuAD part A they beat bm25s' defaults (1.5, 0.75).
BM25_K1 = 0.9
BM25_B = 0.4
LEXICAL_FORMAT = 1
# A question's postings are summed per row in an array over every row when there are more
# than one per this many rows; fewer are sorted instead.
DENSE_SUM_FACTOR = 16
PARAMS = "params.json"
VOCABULARY = "vocabulary.json"
# The arrays of a lexical folder: per term where its postings start (then the total), per
# posting its row and term frequency, per row its length in terms.
ARRAYS = ("term_starts.npy", "posting_rows.npy", "posting_counts.npy", "row_lengths.npy")
LEXICAL_FILES = (PARAMS, VOCABULARY, *ARRAYS)


@dataclass(frozen=True, slots=True)
class LexicalMatches:
    """The rows a query's terms occur in (ascending) and their BM25 scores: a question's
    lexical signal, computed once and read by every stage."""

    rows: np.ndarray  # int64, ascending
    scores: np.ndarray  # float32

    @classmethod
    def empty(cls) -> LexicalMatches:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))

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


class LexicalSegment:
    """One segment's postings, memory-mapped read-only."""

    def __init__(
        self,
        vocabulary: dict[str, int],
        term_starts: np.ndarray,
        posting_rows: np.ndarray,
        posting_counts: np.ndarray,
        row_lengths: np.ndarray,
    ) -> None:
        self.vocabulary = vocabulary
        self._term_starts = term_starts
        self._posting_rows = posting_rows
        self._posting_counts = posting_counts
        self.row_lengths = row_lengths
        self.total_length = float(row_lengths.sum(dtype=np.float64))

    @classmethod
    def empty(cls) -> LexicalSegment:
        nothing = np.zeros(0, dtype=np.float32)
        return cls({}, np.zeros(1, dtype=np.int64), nothing, nothing, nothing)

    @classmethod
    def open(cls, path: Path, count: int) -> LexicalSegment:
        """The postings of `count` rows saved at `path` (an empty collection has no folder)."""
        check_lexical(path, count)
        if count == 0 and not path.exists():
            return cls.empty()
        try:
            vocabulary = json.loads((path / VOCABULARY).read_text(encoding="utf-8"))
            # Plain views of the memory maps: no np.memmap bookkeeping on each read.
            arrays = [np.load(path / name, mmap_mode="r").view(np.ndarray) for name in ARRAYS]
        except (OSError, ValueError) as error:
            message = f"lexical index {path} is unreadable: {error}; {REBUILD_HINT}"
            raise IndexCorrupt(message) from error
        term_starts, posting_rows, posting_counts, row_lengths = arrays
        if (
            not isinstance(vocabulary, dict)
            or len(term_starts) != len(vocabulary) + 1
            or len(row_lengths) != count
            or len(posting_rows) != len(posting_counts)
            or (len(term_starts) and int(term_starts[-1]) != len(posting_rows))
        ):
            raise IndexCorrupt(f"lexical index {path} is inconsistent; {REBUILD_HINT}")
        return cls(vocabulary, term_starts, posting_rows, posting_counts, row_lengths)

    @staticmethod
    def write(path: Path, rows: Iterable[Sequence[str]]) -> int:
        """Save the postings of the rows' terms at `path`; return how many rows there were.

        An empty collection writes nothing.
        """
        writer = LexicalWriter()
        for terms in rows:
            writer.add(terms)
        return writer.write(path)

    def __len__(self) -> int:
        return len(self.row_lengths)

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """The rows holding `term` (ascending) and how often each holds it."""
        token = self.vocabulary.get(term)
        if token is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        start, end = int(self._term_starts[token]), int(self._term_starts[token + 1])
        return self._posting_rows[start:end], self._posting_counts[start:end]


class LexicalWriter:
    """Postings gathered row after row (compactly), then written as one segment's."""

    def __init__(self) -> None:
        self._vocabulary: dict[str, int] = {}
        self._term_ids = array("i")
        self._posting_rows = array("i")
        self._posting_counts = array("f")
        self._lengths = array("f")

    def add(self, terms: Sequence[str]) -> None:
        """The next row's terms."""
        row = len(self._lengths)
        self._lengths.append(len(terms))
        vocabulary = self._vocabulary
        for term, count in Counter(terms).items():
            self._term_ids.append(vocabulary.setdefault(term, len(vocabulary)))
            self._posting_rows.append(row)
            self._posting_counts.append(count)

    def write(self, path: Path) -> int:
        """Save the postings at `path`; return how many rows there were (none: no folder)."""
        if not self._lengths:
            return 0
        term_ids = np.frombuffer(self._term_ids, dtype=np.int32)
        by_term = np.argsort(term_ids, kind="stable")
        term_starts = np.zeros(len(self._vocabulary) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_ids, minlength=len(self._vocabulary)), out=term_starts[1:])
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / ARRAYS[0], term_starts)
        np.save(path / ARRAYS[1], np.frombuffer(self._posting_rows, dtype=np.int32)[by_term])
        np.save(path / ARRAYS[2], np.frombuffer(self._posting_counts, dtype=np.float32)[by_term])
        np.save(path / ARRAYS[3], np.frombuffer(self._lengths, dtype=np.float32))
        (path / VOCABULARY).write_text(json.dumps(self._vocabulary), encoding="utf-8")
        rows = len(self._lengths)
        params = {"format": LEXICAL_FORMAT, "rows": rows, "terms": len(self._vocabulary)}
        (path / PARAMS).write_text(json.dumps(params), encoding="utf-8")
        return rows


class LexicalIndex:
    """BM25 over the rows of one or more segments (rows numbered segment after segment).

    `deleted` rows (of replaced or removed documents) never match.
    """

    def __init__(
        self, segments: Sequence[LexicalSegment] = (), deleted: RowRanges | None = None
    ) -> None:
        self._segments = list(segments)
        self._bases = np.cumsum([0] + [len(s) for s in self._segments])
        rows = int(self._bases[-1])
        self._mean_length = (
            sum(s.total_length for s in self._segments) / rows if rows else 1.0
        ) or 1.0
        self._deleted = deleted if deleted is not None and deleted.count else None

    @classmethod
    def open(cls, path: Path, count: int) -> LexicalIndex:
        """The index of one segment of `count` rows saved at `path`."""
        return cls([LexicalSegment.open(path, count)])

    def __len__(self) -> int:
        return int(self._bases[-1])

    def match(self, terms: list[str]) -> LexicalMatches:
        """Every row holding one of `terms`, with its BM25 score (from the terms' postings)."""
        rows_parts: list[np.ndarray] = []
        score_parts: list[np.ndarray] = []
        total_rows = len(self)
        # float32 throughout: half the memory traffic over millions of postings.
        norm_base = np.float32(BM25_K1 * (1 - BM25_B))
        norm_per_length = np.float32(BM25_K1 * BM25_B / self._mean_length)
        for term in dict.fromkeys(terms):
            found = [(base, segment, *segment.postings(term)) for base, segment in self._located()]
            frequency = sum(len(rows) for _, _, rows, _ in found)
            if frequency == 0:
                continue
            idf = np.float32(np.log1p((total_rows - frequency + 0.5) / (frequency + 0.5)))
            for base, segment, rows, counts in found:
                if len(rows) == 0:
                    continue
                norm = segment.row_lengths[rows] * norm_per_length
                norm += norm_base
                norm += counts
                score = counts * idf
                score /= norm
                rows_parts.append(rows + np.int64(base) if base else rows)
                score_parts.append(score)
        if not rows_parts:
            return LexicalMatches.empty()
        rows, scores = np.concatenate(rows_parts), np.concatenate(score_parts)
        if len(rows) * DENSE_SUM_FACTOR >= total_rows:
            # Many postings: summing into one slot per row beats sorting them (15 ms of a
            # 22 ms question at 100,000 passages); BM25 scores are positive, so the rows
            # with a sum are the rows that match.
            summed = np.bincount(rows, weights=scores, minlength=total_rows)
            unique = np.flatnonzero(summed > 0)  # 5x faster than on the floats themselves
            summed = summed[unique]
        else:
            unique, slot = np.unique(rows, return_inverse=True)
            summed = np.bincount(slot.reshape(-1), weights=scores)
        matches = LexicalMatches(
            unique.astype(np.int64, copy=False), summed.astype(np.float32, copy=False)
        )
        if self._deleted is not None:
            matches = matches.only(~self._deleted.contains(matches.rows))
        return matches

    def top(self, terms: list[str], n: int) -> RowScores:
        """The `n` rows with the highest BM25 score for `terms`, best first (scores > 0)."""
        return self.match(terms).top(n)

    def score(self, terms: list[str], rows: np.ndarray) -> np.ndarray:
        """The BM25 score of `terms` for each of `rows`, in their order."""
        return self.match(terms).score(rows)

    def _located(self) -> list[tuple[int, LexicalSegment]]:
        return [
            (int(base), segment) for base, segment in zip(self._bases, self._segments, strict=False)
        ]


def check_lexical(path: Path, count: int) -> None:
    """IndexCorrupt unless `path` holds a lexical index over `count` rows (files and params)."""
    if count == 0 and not path.exists():
        return  # an empty collection has no lexical index
    if not path.is_dir():
        raise IndexCorrupt(f"lexical index {path} is missing; {REBUILD_HINT}")
    missing = [name for name in LEXICAL_FILES if not (path / name).is_file()]
    if missing:
        raise IndexCorrupt(f"lexical index {path} lacks {', '.join(missing)}; {REBUILD_HINT}")
    try:
        params = json.loads((path / PARAMS).read_text(encoding="utf-8"))
        rows, version = params["rows"], params["format"]
    except (OSError, ValueError, TypeError, KeyError) as error:
        message = f"lexical index {path} is unreadable: {error}; {REBUILD_HINT}"
        raise IndexCorrupt(message) from error
    if version != LEXICAL_FORMAT:
        raise IndexCorrupt(f"lexical index {path} has format {version}; {REBUILD_HINT}")
    if rows != count:
        raise IndexCorrupt(f"lexical index {path} covers {rows} texts, not {count}; {REBUILD_HINT}")
