"""The lexical index: BM25 over pre-analysed terms, scored from term-frequency postings.

Each segment of an index stores, per term, the rows holding it and how often (its postings),
and each row's length. A question is scored at search time from the postings of its terms
only, with the collection statistics (row count, mean length, document frequency) summed
over every segment: the scores are those of one BM25 index over all the rows, however the
rows are split into segments. Rows of deleted documents still count in the statistics until
their segment is merged away, as in Lucene.

A question's best rows are found without scoring every row its terms occur in (MaxScore,
Turtle and Flood 1995): each segment keeps, per term, the most that term can add to a row's
score, so once enough rows are known, rows holding only the common terms cannot reach them
and those terms are looked up for the known rows alone.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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
# Per term the highest share of its weight (idf) it gives any row, with the segment's own mean
# row length. Segments written before it have none: their terms are bounded by 1 (looser).
TERM_BOUNDS = "term_bounds.npy"
# Float32 rounding may put a score a hair above its bound's arithmetic.
BOUND_SLACK = 1.0001
# Below this many postings over a question's terms, scoring every one is cheaper than
# pruning (measured on SciFact's 10,645 passages and on 1.1 million: bench notes in
# BENCHMARKS.md).
PRUNE_FROM_POSTINGS = 32768
# Questions whose best rows are sought at once per index (each holds one float64 per row);
# more wait, as they would for the cores anyway.
SCORE_BUFFERS = min(4, max(2, os.cpu_count() or 2))
# While the best rows are sought, how many times as many rows as asked for are scored in
# full to learn what score the best surely reach.
LEARN_FACTOR = 4
# Rows are looked up in a term's postings (a binary search each) while they are fewer than
# its postings by this factor; else the postings are read through.
LOOKUP_FACTOR = 8


class LexicalScores(Protocol):
    """A question's BM25 as the search stages read it."""

    def top(self, n: int) -> RowScores:
        """The `n` best rows, best first."""
        ...

    def score(self, rows: np.ndarray) -> np.ndarray:
        """The score of each of `rows` (0 where the terms do not occur), in their order."""
        ...

    def best(self) -> float:
        """The highest score, or 0.0 when no row matches."""
        ...


@dataclass(frozen=True, slots=True)
class LexicalMatches:
    """Every row a query's terms occur in (ascending) and its BM25 score."""

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
        term_bounds: np.ndarray | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self._term_starts = term_starts
        self._posting_rows = posting_rows
        self._posting_counts = posting_counts
        self._term_bounds = term_bounds
        self.row_lengths = row_lengths
        self.total_length = float(row_lengths.sum(dtype=np.float64))
        self.mean_length = self.total_length / len(row_lengths) if len(row_lengths) else 1.0

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
            bounds_file = path / TERM_BOUNDS
            term_bounds = (
                np.load(bounds_file, mmap_mode="r").view(np.ndarray)
                if bounds_file.is_file()
                else None
            )
        except (OSError, ValueError, EOFError) as error:
            message = f"lexical index {path} is unreadable: {error}; {REBUILD_HINT}"
            raise IndexCorrupt(message) from error
        term_starts, posting_rows, posting_counts, row_lengths = arrays
        if (
            not isinstance(vocabulary, dict)
            or len(term_starts) != len(vocabulary) + 1
            or len(row_lengths) != count
            or len(posting_rows) != len(posting_counts)
            or (len(term_starts) and int(term_starts[-1]) != len(posting_rows))
            or (term_bounds is not None and len(term_bounds) != len(vocabulary))
        ):
            raise IndexCorrupt(f"lexical index {path} is inconsistent; {REBUILD_HINT}")
        return cls(vocabulary, term_starts, posting_rows, posting_counts, row_lengths, term_bounds)

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

    def term_bound(self, term: str, mean_length: float) -> float:
        """At most the share of `term`'s weight any row of this segment gets from it, scored
        with `mean_length` as the collection's mean row length."""
        token = self.vocabulary.get(term)
        if token is None or self._term_bounds is None:
            return 1.0
        # A shorter mean length than this segment's (the bound's) lengthens every row, and
        # raises no score by more than the ratio of the two.
        stretch = max(1.0, mean_length / self.mean_length)
        return min(1.0, float(self._term_bounds[token]) * stretch * BOUND_SLACK)


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
        rows = np.frombuffer(self._posting_rows, dtype=np.int32)
        counts = np.frombuffer(self._posting_counts, dtype=np.float32)
        lengths = np.frombuffer(self._lengths, dtype=np.float32)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / ARRAYS[0], term_starts)
        np.save(path / ARRAYS[1], rows[by_term])
        np.save(path / ARRAYS[2], counts[by_term])
        np.save(path / ARRAYS[3], lengths)
        bounds = term_bounds(term_ids, rows, counts, lengths, len(self._vocabulary))
        np.save(path / TERM_BOUNDS, bounds)
        (path / VOCABULARY).write_text(json.dumps(self._vocabulary), encoding="utf-8")
        params = {"format": LEXICAL_FORMAT, "rows": len(lengths), "terms": len(self._vocabulary)}
        (path / PARAMS).write_text(json.dumps(params), encoding="utf-8")
        return len(lengths)


@dataclass(frozen=True, slots=True)
class Bm25Norm:
    """BM25's length normalisation for one mean row length: a term's share of its weight
    in a row is count / (count + k1 * (1 - b + b * length / mean length))."""

    base: np.float32
    per_length: np.float32

    @classmethod
    def of(cls, mean_length: float) -> Bm25Norm:
        return cls(np.float32(BM25_K1 * (1 - BM25_B)), np.float32(BM25_K1 * BM25_B / mean_length))

    def scores(self, counts: np.ndarray, lengths: np.ndarray, idf: np.float32) -> np.ndarray:
        """Each posting's score (float32; always computed in this order, so that a row's score
        is the same whichever way it is reached)."""
        norm = lengths * self.per_length
        norm += self.base
        norm += counts
        score = counts * idf
        score /= norm
        return score

    def shares(self, counts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Each posting's share of its term's weight."""
        return self.scores(counts, lengths, np.float32(1.0))


def term_bounds(
    term_ids: np.ndarray, rows: np.ndarray, counts: np.ndarray, lengths: np.ndarray, terms: int
) -> np.ndarray:
    """Per term the highest share of its weight any of its postings has (postings in any
    order), with the rows' own mean length."""
    norm = Bm25Norm.of(float(lengths.sum(dtype=np.float64)) / len(lengths) or 1.0)
    bounds = np.zeros(terms, dtype=np.float32)
    block = 1 << 20  # postings at a time: no copy of every posting at once
    for start in range(0, len(rows), block):
        end = start + block
        shares = norm.shares(counts[start:end], lengths[rows[start:end]])
        np.maximum.at(bounds, term_ids[start:end], shares)
    return bounds


@dataclass(frozen=True, slots=True)
class _TermPart:
    base: int  # the segment's first row in the index
    segment: LexicalSegment
    rows: np.ndarray  # segment rows holding the term, ascending
    counts: np.ndarray


@dataclass(frozen=True, slots=True)
class _Term:
    idf: np.float32
    bound: float  # at most what the term adds to any row's score
    parts: tuple[_TermPart, ...]
    postings: int  # over every part


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
        self._norm = Bm25Norm.of(self._mean_length)
        self._deleted = deleted if deleted is not None and deleted.count else None
        self._buffers = ScoreBuffers(rows)

    @classmethod
    def open(cls, path: Path, count: int) -> LexicalIndex:
        """The index of one segment of `count` rows saved at `path`."""
        return cls([LexicalSegment.open(path, count)])

    def __len__(self) -> int:
        return int(self._bases[-1])

    def match(self, terms: list[str]) -> LexicalQuery:
        """The BM25 scores of `terms`' rows, computed as far as they are asked for."""
        total_rows = len(self)
        found: list[_Term] = []
        for term in dict.fromkeys(terms):
            parts = []
            bound = 0.0
            for base, segment in zip(self._bases, self._segments, strict=False):
                rows, counts = segment.postings(term)
                if len(rows):
                    parts.append(_TermPart(int(base), segment, rows, counts))
                    bound = max(bound, segment.term_bound(term, self._mean_length))
            frequency = sum(len(part.rows) for part in parts)
            if frequency == 0:
                continue
            idf = np.float32(np.log1p((total_rows - frequency + 0.5) / (frequency + 0.5)))
            found.append(_Term(idf, float(idf) * bound, tuple(parts), frequency))
        return LexicalQuery(found, self._norm, self._buffers, self._deleted)

    def top(self, terms: list[str], n: int) -> RowScores:
        """The `n` rows with the highest BM25 score for `terms`, best first (scores > 0)."""
        return self.match(terms).top(n)

    def score(self, terms: list[str], rows: np.ndarray) -> np.ndarray:
        """The BM25 score of `terms` for each of `rows`, in their order."""
        return self.match(terms).score(rows)


class LexicalQuery:
    """One question's BM25 over an index: its best rows, any rows' scores, or every match.

    The best rows are found as MaxScore does: the terms that can add most to a score are
    read through first (rare terms: short postings). Some rows likely among the best are
    scored in full on the way, so a score the n-th best row surely reaches is known; once
    the terms left could not lift a row holding none of the read ones to it, those terms
    are only looked up for the rows that still can. The result is that of scoring every
    matching row, bit for bit. A question whose terms have few postings has them all
    scored at once instead (cheaper than pruning below PRUNE_FROM_POSTINGS).
    """

    def __init__(
        self,
        terms: list[_Term],
        norm: Bm25Norm,
        buffers: ScoreBuffers,
        deleted: RowRanges | None,
    ) -> None:
        self._terms = sorted(terms, key=lambda term: -term.bound)
        self._norm = norm
        self._buffers = buffers
        self._total_rows = buffers.rows
        self._deleted = deleted
        self._best = RowScores.empty()  # the largest top(n) asked for so far
        self._best_n = 0
        self.postings_read = 0  # postings read through (not looked up) to find the best
        self.postings = sum(term.postings for term in terms)
        self._every = self._every_match() if self.postings < PRUNE_FROM_POSTINGS else None

    def top(self, n: int) -> RowScores:
        """The `n` best rows, best first."""
        if self._every is not None:
            return self._every.top(n)
        if n <= 0 or not self._terms:
            return RowScores.empty()
        if self._best_n >= n or len(self._best) < self._best_n:  # or it holds every match
            return RowScores(self._best.rows[:n], self._best.scores[:n])
        best = self._top(n)
        self._best, self._best_n = best, n
        return best

    def best(self) -> float:
        """The highest score, or 0.0 when no row matches."""
        if self._every is not None:
            return self._every.best()
        return self.top(1).best()

    def score(self, rows: np.ndarray) -> np.ndarray:
        """The score of each of `rows` (0 where the terms do not occur), in their order."""
        if self._every is not None:
            return self._every.score(rows)
        rows = np.asarray(rows, dtype=np.int64)
        summed = np.zeros(len(rows), dtype=np.float64)
        for term in self._terms:
            summed += self._looked_up(term, rows)
        out = summed.astype(np.float32)
        if self._deleted is not None:
            out[self._deleted.contains(rows)] = 0
        return out

    def every(self) -> LexicalMatches:
        """Every row holding one of the terms, with its score (for filters over all rows)."""
        return self._every if self._every is not None else self._every_match()

    def _every_match(self) -> LexicalMatches:
        if not self._terms:
            return LexicalMatches.empty()
        postings = [self._postings(term) for term in self._terms]
        rows = np.concatenate([term_rows for term_rows, _ in postings])
        scores = np.concatenate([term_scores for _, term_scores in postings])
        if len(rows) * DENSE_SUM_FACTOR >= self._total_rows:
            # Many postings: summing into one slot per row beats sorting them; BM25 scores
            # are positive, so the rows with a sum are the rows that match.
            summed = np.bincount(rows, weights=scores, minlength=self._total_rows)
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

    def _top(self, n: int) -> RowScores:
        terms = self._terms
        # left[i]: the most the terms from i on can add to any row.
        left = np.cumsum([term.bound for term in terms][::-1])[::-1].tolist() + [0.0]
        known = _KnownBest(n)
        with self._buffers.lent() as summed:  # exact sums of float32 scores, in any order
            seen: list[np.ndarray] = []  # every row with a score, once
            try:
                read = 0
                while read < len(terms) and not (read and left[read] < known.sure):
                    rows, scores = self._postings(terms[read])
                    self.postings_read += len(rows)
                    seen.append(rows[summed[rows] == 0])  # BM25 scores are positive
                    summed[rows] += scores
                    read += 1
                    self._learn(known, rows, summed[rows], terms[read:])
                rows = np.concatenate(seen)
                for term_at in range(read, len(terms)):
                    rows = rows[summed[rows] + left[term_at] >= known.sure]
                    self._add_to_seen(summed, terms[term_at], rows)
                    self._learn(known, rows, summed[rows], terms[term_at + 1 :])
                scores = summed[rows].astype(np.float32)
            finally:
                for part in seen:
                    summed[part] = 0
        if self._deleted is not None:
            live = ~self._deleted.contains(rows)
            rows, scores = rows[live], scores[live]
        return best_of(rows, scores, n)

    def _add_to_seen(self, summed: np.ndarray, term: _Term, rows: np.ndarray) -> None:
        """Add `term`'s scores to `summed` for `rows` (rows seen before; others seen may
        get theirs too): looked up when there are few rows, else read off its postings."""
        if len(rows) * LOOKUP_FACTOR < term.postings:
            summed[rows] += self._looked_up(term, rows)
            return
        self.postings_read += term.postings
        for part in term.parts:
            holding = part.rows.astype(np.int64) + part.base
            seen = np.flatnonzero(summed[holding] > 0)
            lengths = part.segment.row_lengths[part.rows[seen]]
            summed[holding[seen]] += self._norm.scores(part.counts[seen], lengths, term.idf)

    def _learn(
        self, known: _KnownBest, rows: np.ndarray, partial: np.ndarray, unread: list[_Term]
    ) -> None:
        """Score in full the rows most likely among the best (by their `partial` scores, a
        few times `known.n` of them at most) and keep the best in `known`."""
        if not unread:
            return  # the last term: the rows are scored in full by now
        pick = np.flatnonzero(partial >= known.sure)
        if self._deleted is not None:
            pick = pick[~self._deleted.contains(rows[pick])]
        most = LEARN_FACTOR * known.n
        if len(pick) > most:
            pick = pick[np.argpartition(-partial[pick], most - 1)[:most]]
        full = partial[pick]
        for term in unread:
            full = full + self._looked_up(term, rows[pick])
        known.add(rows[pick], full)

    def _postings(self, term: _Term) -> tuple[np.ndarray, np.ndarray]:
        """Every row holding `term` (ascending) and its score."""
        rows = [part.rows.astype(np.int64) + part.base for part in term.parts]
        scores = [
            self._norm.scores(part.counts, part.segment.row_lengths[part.rows], term.idf)
            for part in term.parts
        ]
        if len(rows) == 1:
            return rows[0], scores[0]
        return np.concatenate(rows), np.concatenate(scores)

    def _looked_up(self, term: _Term, rows: np.ndarray) -> np.ndarray:
        """What `term` adds to the score of each of `rows` (any order)."""
        out = np.zeros(len(rows), dtype=np.float32)
        for part in term.parts:
            local = rows - part.base
            mine = np.flatnonzero((local >= 0) & (local < len(part.segment)))
            if len(mine) == 0:
                continue
            local = local[mine].astype(part.rows.dtype)  # another type would copy the postings
            at = np.searchsorted(part.rows, local)
            at[at == len(part.rows)] = 0
            holds = part.rows[at] == local
            at, local = at[holds], local[holds]
            counts = part.counts[at]
            scores = self._norm.scores(counts, part.segment.row_lengths[local], term.idf)
            out[mine[holds]] = scores
        return out


class _KnownBest:
    """Rows whose full score is known, the `n` best of them kept: the n-th best row of the
    index scores at least `sure`."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.rows = np.zeros(0, dtype=np.int64)
        self.scores = np.zeros(0, dtype=np.float64)
        self.sure = 0.0

    def add(self, rows: np.ndarray, scores: np.ndarray) -> None:
        rows = np.concatenate([self.rows, rows])
        scores = np.concatenate([self.scores, scores])
        rows, first = np.unique(rows, return_index=True)  # a row counts once
        scores = scores[first]
        if len(rows) > self.n:
            keep = np.argpartition(-scores, self.n - 1)[: self.n]
            rows, scores = rows[keep], scores[keep]
        self.rows, self.scores = rows, scores
        if len(rows) == self.n:
            self.sure = max(self.sure, float(scores.min()))


class ScoreBuffers:
    """Per-row score sums lent to one question at a time, all zero when lent: summing a
    term's postings into them costs one step per posting, where merging sorted rows costs
    one per row seen so far."""

    def __init__(self, rows: int, most: int = SCORE_BUFFERS) -> None:
        self.rows = rows
        self._most = most
        self._made = 0
        self._free: queue.LifoQueue[np.ndarray] = queue.LifoQueue()
        self._lock = threading.Lock()

    @contextmanager
    def lent(self) -> Iterator[np.ndarray]:
        """A buffer of zeros over every row; the borrower zeroes what it wrote before
        handing it back."""
        with self._lock:
            make = self._free.empty() and self._made < self._most
            if make:
                self._made += 1
        buffer = np.zeros(self.rows, dtype=np.float64) if make else self._free.get()
        try:
            yield buffer
        finally:
            self._free.put(buffer)


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
