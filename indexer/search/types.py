"""What flows between the search stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from indexer.lexical import LexicalScores
from indexer.ranking import RowRanges

Mode = Literal["hybrid", "bm25", "dense"]
MODES: tuple[Mode, ...] = ("hybrid", "bm25", "dense")


@dataclass(frozen=True, slots=True)
class Scope:
    """Which documents a question searches: one document, a folder, a format (all optional)."""

    doc: str | None = None
    folder: str | None = None
    format: str | None = None

    def __post_init__(self) -> None:
        # An empty value (`?doc=` in a URL, say) is no filter.
        for name in ("doc", "folder", "format"):
            if not getattr(self, name):
                object.__setattr__(self, name, None)

    def __bool__(self) -> bool:
        return any((self.doc, self.folder, self.format))

    @property
    def folder_prefix(self) -> str | None:
        """The doc id prefix of the folder ('notes' and 'notes/' both give 'notes/')."""
        folder = (self.folder or "").strip("/")
        return f"{folder}/" if folder else None


@dataclass(frozen=True, slots=True)
class Query:
    """A validated question, analysed once for every stage."""

    text: str
    mode: Mode
    terms: list[str]  # distinct lexical terms
    vector: np.ndarray  # unit-length embedding, float32
    allowed: RowRanges | None = None  # the passage rows in scope; None: all of them


@dataclass(frozen=True, slots=True)
class Candidates:
    """Passage rows worth fusing, with their passage-level signals (ascending row order).

    BM25 scores are divided by the query's best score over the whole collection, so that
    they sit on the same 0..1 scale as cosines.
    """

    rows: np.ndarray  # int64, ascending
    dense: np.ndarray  # float32 cosine of each row's passage vector
    lexical: np.ndarray  # float32 normalised BM25 of each row's passage text
    lexical_matches: LexicalScores  # the query's BM25 over all passages
    sentence_matches: LexicalScores  # the query's BM25 over all sentences

    @property
    def lexical_best(self) -> float:
        """The query's best passage BM25 (the normaliser)."""
        return self.lexical_matches.best()

    @property
    def sentence_lexical_best(self) -> float:
        """The query's best sentence BM25 (the normaliser)."""
        return self.sentence_matches.best()


@dataclass(frozen=True, slots=True)
class Fused:
    """Candidates with their fused score and the scores of their sentences.

    Sentences are laid out candidate after candidate: the sentences of `rows[i]` are at
    `sentence_start[i]` up to `sentence_start[i + 1]` in the sentence arrays.
    """

    rows: np.ndarray  # int64, ascending (as the candidates)
    scores: np.ndarray  # float32 fused score per row
    sentence_start: np.ndarray  # int64, one more than rows
    sentence_dense: np.ndarray  # float32 cosine per sentence
    sentence_lexical: np.ndarray  # float32 normalised BM25 per sentence
    passage_dense: np.ndarray  # float32 cosine of each row's passage vector
    passage_lexical: np.ndarray  # float32 normalised BM25 of each row's passage text

    def order(self) -> np.ndarray:
        """Positions of the rows, best fused score first (ties: lower row first)."""
        return np.argsort(-self.scores, kind="stable")

    def position(self, row: int) -> int | None:
        """Where a passage row is among the rows, or None when it is not a candidate."""
        at = int(np.searchsorted(self.rows, row))
        return at if at < len(self.rows) and int(self.rows[at]) == row else None
