"""Hybrid retrieval and answers: the one search API shared by the CLI, the JSON API and pages.

`Searcher` opens a generation's index structures and wires the search stages
(`indexer.search`): candidates → fusion → answer. Per question, work is bounded by the
number of candidates, not by the size of the collection (except the exact scan of passage
vectors on indexes too small to get an ANN structure).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import threadpoolctl

from indexer.answer import is_authorship_question
from indexer.answerability import MIN_CONFIDENCE
from indexer.embedding import Embedder, load_embedder
from indexer.errors import DocumentNotFound, IndexCorrupt, InvalidQuery, ModelMismatch
from indexer.models import (
    NO_ANSWER_MESSAGE,
    NOT_ANSWERED_MESSAGE,
    AskResult,
    DocumentInfo,
    DocumentView,
    IndexStats,
    RankedPassage,
)
from indexer.ranking import RowRanges
from indexer.reader import (
    ALWAYS,
    AUTO,
    READER_MIN_CONFIDENCE,
    Reader,
    WhenToRead,
    load_reader,
)
from indexer.search.answering import AnswerStage
from indexer.search.candidates import CANDIDATES, CandidateStage
from indexer.search.fusion import FusionStage, FusionWeights
from indexer.search.rerank import RERANK_DEPTH, RerankStage, load_cross_encoder
from indexer.search.types import MODES, Candidates, Fused, Mode, Query, Scope
from indexer.segments import SegmentedIndex
from indexer.settings import Settings
from indexer.store import Manifest, file_stamps, require_generation
from indexer.text import lexical_terms

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

__all__ = [
    "ANSWER_THRESHOLDS",
    "CANDIDATES",
    "MAX_K",
    "MAX_OFFSET",
    "MAX_QUERY_CHARS",
    "MODES",
    "AnswerModels",
    "FusionWeights",
    "Mode",
    "RankedPassage",
    "Scope",
    "Searcher",
    "validate_query",
]

MAX_QUERY_CHARS = 1000
MAX_K = 50
# How far paging reaches: passages past this many are not ranked for a question.
MAX_OFFSET = 450
# Scopes (filters) whose rows are remembered per searcher.
SCOPE_CACHE = 256
# Lowest question-sentence cosine that counts as an answer, by how sentence vectors were
# made: below both, off-topic questions (at most 0.26 on the seeds); above, 99% of SQuAD's.
# In-context vectors sit about 0.05 lower for the same sentences (eval/reports/README.md).
ANSWER_THRESHOLDS = {"standalone": 0.35, "in-context": 0.31}


def validate_offset(offset: int) -> int:
    """The offset, or InvalidQuery when it is not a whole number from 0 to MAX_OFFSET."""
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise InvalidQuery(f"offset must be a whole number from 0 to {MAX_OFFSET}")
    return offset


def validate_query(query: str, k: int) -> str:
    """The question stripped, or InvalidQuery with a message a user can act on."""
    question = query.strip() if isinstance(query, str) else ""
    if not question:
        raise InvalidQuery("the question is empty")
    if len(question) > MAX_QUERY_CHARS:
        raise InvalidQuery(f"the question is longer than {MAX_QUERY_CHARS} characters")
    if any("\ud800" <= char <= "\udfff" for char in question):
        # A lone surrogate: what a non-UTF-8 byte on the command line or \ud800 in JSON gives.
        raise InvalidQuery("the question is not valid text (not valid Unicode)")
    if not 1 <= k <= MAX_K:
        raise InvalidQuery(f"k must be between 1 and {MAX_K}")
    return question


@dataclass(frozen=True, slots=True)
class AnswerModels:
    """The optional models a searcher answers with, loaded once: a server shares them with
    every index generation it moves to."""

    reranker: CrossEncoder | None = None
    reader: Reader | None = None

    @classmethod
    def load(cls, settings: Settings) -> AnswerModels:
        """The reranker and the reader the settings ask for (None for each one they do not)."""
        return cls(
            load_cross_encoder(settings.reranker) if settings.reranker else None,
            load_reader(settings.cache_dir) if settings.reader != "off" else None,
        )


class Searcher:
    """An open index: answers questions and serves documents. Safe to share between threads."""

    def __init__(
        self,
        index_dir: Path,
        embedder: Embedder | None = None,
        answer_threshold: float | None = None,
        weights: FusionWeights | None = None,
        *,
        ann_min_passages: int | None = None,
        candidates_per_signal: int = CANDIDATES,
        min_confidence: float | None = None,
        reranker: CrossEncoder | None = None,
        reranker_depth: int = RERANK_DEPTH,
        reader: Reader | None = None,
        read_when: WhenToRead = ALWAYS,
    ) -> None:
        generation = require_generation(index_dir)
        self.reader = reader
        self.read_when = read_when
        self.reranker = reranker
        self.reranker_depth = reranker_depth
        self.index_dir = index_dir
        self.generation = generation
        self.manifest = Manifest.read(generation)
        self.manifest.check_compatible()
        self._stamps = file_stamps(generation, self.manifest)
        if embedder is not None and (embedder.model_name, embedder.backend) != (
            self.manifest.model,
            self.manifest.backend,
        ):
            raise ModelMismatch(
                f"index was built with {self.manifest.model!r} ({self.manifest.backend}), "
                f"not {embedder.model_name!r} ({embedder.backend})"
            )
        self.embedder = embedder or load_embedder(
            self.manifest.model, self.manifest.backend, for_queries=True
        )
        _one_thread_per_query()
        if self.embedder.dimension != self.manifest.dimension:
            raise ModelMismatch(
                f"index vectors have dimension {self.manifest.dimension}, "
                f"the model gives {self.embedder.dimension}"
            )
        self.answer_threshold = (
            answer_threshold
            if answer_threshold is not None
            else ANSWER_THRESHOLDS.get(
                self.manifest.sentence_vectors, ANSWER_THRESHOLDS["standalone"]
            )
        )
        if min_confidence is None:
            min_confidence = MIN_CONFIDENCE if reader is None else READER_MIN_CONFIDENCE
        self.min_confidence = min_confidence
        self.weights = weights or FusionWeights()
        if ann_min_passages is None:
            ann_min_passages = Settings().ann_min_passages
        index = SegmentedIndex.open(generation, self.manifest, ann_min_passages, self._stamps)
        self._store = index.store
        self._scopes: dict[Scope, RowRanges] = {}
        self._scope_lock = threading.Lock()
        try:
            self._wire_stages(index, candidates_per_signal)
        except BaseException:
            index.close()
            raise

    def _wire_stages(self, index: SegmentedIndex, candidates_per_signal: int) -> None:
        self.segments = index.readers
        self.uses_ann = index.passage_vectors.uses_ann
        self._passages = self._store.rows
        self._layout = index.layout
        w = self.weights
        self._candidates = CandidateStage(
            index.passage_vectors,
            index.lexical,
            index.sentence_lexical,
            index.sentence_offsets,
            w.passage,
            w.lexical,
            candidates_per_signal,
        )
        self._fusion = FusionStage(index.sentence_vectors, index.sentence_offsets, w)
        self._answer = AnswerStage(
            self._store, self.answer_threshold, self.min_confidence, self.reader, self.read_when
        )
        self._rerank = (
            RerankStage(self.reranker, self._store, self.reranker_depth)
            if self.reranker is not None
            else None
        )

    @classmethod
    def open(
        cls,
        index_dir: Path,
        embedder: Embedder | None = None,
        answer_threshold: float | None = None,
        weights: FusionWeights | None = None,
        *,
        ann_min_passages: int | None = None,
        min_confidence: float | None = None,
        reranker: CrossEncoder | None = None,
        reranker_depth: int = RERANK_DEPTH,
        reader: Reader | None = None,
        read_when: WhenToRead = ALWAYS,
    ) -> Searcher:
        """Open the live generation of the index at `index_dir` (loading its model if needed);
        a `reranker` (`indexer.search.rerank.load_cross_encoder`) rescores the best passages,
        a `reader` (`indexer.reader.load_reader`) reads the best sentences with the question
        (every question's, or as `read_when` says)."""
        return cls(
            index_dir,
            embedder,
            answer_threshold,
            weights,
            ann_min_passages=ann_min_passages,
            min_confidence=min_confidence,
            reranker=reranker,
            reranker_depth=reranker_depth,
            reader=reader,
            read_when=read_when,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        index_dir: Path | None = None,
        embedder: Embedder | None = None,
        models: AnswerModels | None = None,
    ) -> Searcher:
        """Open the index at `index_dir` (default: the settings' index) as the settings
        configure answering, with `models` (default: loaded now, as the settings ask)."""
        index_dir = index_dir or settings.index
        require_generation(index_dir)  # a missing index is reported before any model loads
        models = models or AnswerModels.load(settings)
        return cls.open(
            index_dir,
            embedder=embedder,
            answer_threshold=settings.answer_threshold,
            ann_min_passages=settings.ann_min_passages,
            min_confidence=settings.answer_confidence,
            reranker=models.reranker,
            reranker_depth=settings.reranker_depth,
            reader=models.reader,
            read_when=AUTO if settings.reader == "auto" else ALWAYS,
        )

    def close(self) -> None:
        self._store.close()

    def check(self) -> None:
        """IndexCorrupt if the opened generation was removed, changed, or its metadata fails.

        Cheap enough for every health check: stat calls and one small query.
        """
        if not self.generation.is_dir():
            raise IndexCorrupt(
                f"the index generation this server opened ({self.generation.name}) was "
                "removed; rebuild the index with `paracite index <folder> --rebuild`"
            )
        if file_stamps(self.generation, self.manifest) != self._stamps:
            raise IndexCorrupt(
                f"files of the index generation {self.generation} changed after it was opened "
                "(generations and segments are never modified); rebuild the index with "
                "`paracite index <folder> --rebuild`"
            )
        self._store.check_counts()

    # -- questions ---------------------------------------------------------------------------

    def ask(
        self,
        query: str,
        k: int = 5,
        mode: Mode = "hybrid",
        *,
        scope: Scope | None = None,
        offset: int = 0,
        withhold: Sequence[tuple[str, int]] = (),
        ranked: int = 0,
    ) -> AskResult:
        """The passages that best answer `query`, and the answering sentence if good enough.

        `scope` narrows the search to a document, a folder or a format before ranking;
        `offset` skips that many passages (the next page; only the first page has an answer).
        `withhold` leaves out these (doc id, paragraph) pairs, as if they were not indexed
        (evaluation's unanswerable questions: the article is there, the answer is not).
        `ranked` > 0 also gives the best `ranked` passages of the same search in
        `AskResult.ranking` (the results page's facets), so nothing is searched twice.
        """
        return self._run(
            query,
            k,
            mode,
            want_answer=True,
            scope=scope,
            offset=offset,
            withhold=withhold,
            ranked=ranked,
        )

    def search(
        self,
        query: str,
        k: int = 5,
        mode: Mode = "hybrid",
        *,
        scope: Scope | None = None,
        offset: int = 0,
        withhold: Sequence[tuple[str, int]] = (),
    ) -> AskResult:
        """The passages alone (no answer is chosen)."""
        return self._run(
            query, k, mode, want_answer=False, scope=scope, offset=offset, withhold=withhold
        )

    def rank(
        self,
        query: str,
        mode: Mode = "hybrid",
        depth: int = 100,
        *,
        scope: Scope | None = None,
    ) -> list[RankedPassage]:
        """Up to `depth` passages ranked by fused score, past the API's MAX_K (for evaluation
        and the results page's facets). Every signal contributes at least `depth` candidates.
        """
        if depth < 1:
            raise InvalidQuery("depth must be at least 1")
        prepared = self._query(validate_query(query, 1), mode, self._allowed(scope))
        if prepared is None:
            return []
        _, fused = self._fuse(prepared, max(self._candidates.per_signal, depth))
        return self._ranking(fused, depth)

    def _run(
        self,
        query: str,
        k: int,
        mode: Mode,
        *,
        want_answer: bool,
        scope: Scope | None,
        offset: int,
        withhold: Sequence[tuple[str, int]] = (),
        ranked: int = 0,
    ) -> AskResult:
        started = time.perf_counter()
        question = validate_query(query, k)
        validate_offset(offset)
        prepared = self._query(question, mode, self._in_scope(scope, withhold))
        first_page = want_answer and offset == 0
        if prepared is None:
            reason = NO_ANSWER_MESSAGE if first_page else None
            return AskResult(question, None, reason, [], _ms(started))
        per_signal = max(self._candidates.per_signal, offset + k, ranked)
        candidates, fused = self._fuse(prepared, per_signal)
        if self._rerank is not None:
            fused = self._rerank.run(prepared, fused)
        fused, author_first = self._author_note_first(prepared, candidates, fused)
        answered = self._answer.run(
            prepared, fused, k, want_answer=want_answer, prefer_first=author_first, offset=offset
        )
        reason = None
        if first_page and answered.answer is None:
            # Off the subject altogether, or on it without an answer.
            reason = NOT_ANSWERED_MESSAGE if answered.assessment else NO_ANSWER_MESSAGE
        ranking = tuple(self._ranking(fused, ranked)) if ranked > 0 else ()
        return AskResult(
            prepared.text,
            answered.answer,
            reason,
            answered.hits,
            _ms(started),
            ranking,
            answered.assessment,
        )

    def _ranking(self, fused: Fused, depth: int) -> list[RankedPassage]:
        """The best `depth` fused passages as (row, doc id, score)."""
        top = fused.order()[:depth]
        rows = fused.rows[top]
        doc_ids = self._store.passage_doc_ids(rows)
        return [
            RankedPassage(int(row), doc_id, float(fused.scores[position]))
            for row, doc_id, position in zip(rows, doc_ids, top, strict=True)
        ]

    def _query(self, question: str, mode: Mode, allowed: RowRanges | None) -> Query | None:
        """The question analysed for the stages, or None when no passage is in scope."""
        if mode not in MODES:
            raise InvalidQuery(f"mode must be one of {', '.join(MODES)}")
        if self._passages == 0 or (allowed is not None and allowed.count == 0):
            return None
        terms = list(dict.fromkeys(lexical_terms(question)))
        return Query(question, mode, terms, self.embedder.embed_query(question), allowed)

    def _in_scope(
        self, scope: Scope | None, withhold: Sequence[tuple[str, int]] = ()
    ) -> RowRanges | None:
        """The rows a question may draw from: the scope's (None: every row), less the
        withheld (doc id, paragraph) pairs."""
        allowed = self._allowed(scope)
        if not withhold:
            return allowed
        everything = RowRanges(np.array([[0, self._passages]], dtype=np.int64))
        return (allowed or everything).without(self._store.paragraph_ranges(withhold))

    def _allowed(self, scope: Scope | None) -> RowRanges | None:
        """The passage rows a scope allows (None: every row), remembered per scope."""
        if not scope:
            return None
        with self._scope_lock:
            cached = self._scopes.get(scope)
        if cached is not None:
            return cached
        if scope.format is not None and scope.format not in (formats := self._store.formats()):
            raise InvalidQuery(f"format must be one of {', '.join(formats)} (in this index)")
        allowed = RowRanges(self._store.scope_ranges(scope.doc, scope.folder_prefix, scope.format))
        if allowed.count == 0 and scope.doc is not None and not self._store.has_document(scope.doc):
            raise DocumentNotFound(f"no document {scope.doc!r} in the index")
        with self._scope_lock:
            if len(self._scopes) >= SCOPE_CACHE:
                self._scopes.clear()
            self._scopes[scope] = allowed
        return allowed

    def _fuse(self, query: Query, per_signal: int) -> tuple[Candidates, Fused]:
        candidates = self._candidates.run(query, per_signal)
        return candidates, self._fusion.run(query, candidates)

    def _author_note_first(
        self, query: Query, candidates: Candidates, fused: Fused
    ) -> tuple[Fused, bool]:
        """Rank first the author note of the best passage's document, for "who wrote" questions.

        The note answers "Who wrote ...?" of the document asked about, even when it was not
        a candidate (it is then fused too, so that it can offer the answer).
        """
        if not self._layout.author_passage or not is_authorship_question(query.text):
            return fused, False
        best_row = int(fused.rows[fused.order()[0]])
        author_row = self._layout.author_passage.get(self._layout.document_of(best_row))
        if author_row is None:
            return fused, False
        top = float(fused.scores.max())
        if fused.position(author_row) is None:
            extended = self._candidates.with_rows(
                query,
                np.append(candidates.rows, author_row),
                candidates.lexical_matches,
                candidates.sentence_matches,
            )
            fused = self._fusion.run(query, extended)
        position = fused.position(author_row)
        assert position is not None
        scores = fused.scores.copy()
        scores[position] = np.float32(top + 1e-4)
        return replace(fused, scores=scores), True

    # -- documents ---------------------------------------------------------------------------

    def stats(self) -> IndexStats:
        return self.manifest.stats(self.index_dir)

    def documents(self) -> list[DocumentInfo]:
        return self._store.documents()

    def document(self, doc_id: str) -> DocumentView:
        view = self._store.document(doc_id)
        if view is None:
            raise DocumentNotFound(f"no document {doc_id!r} in the index")
        return view


def _one_thread_per_query() -> None:
    """Questions are answered one per request thread, at most one per core at a time.
    Letting torch or BLAS also spread each one over every core makes concurrent questions
    thrash: 960 ms against 67 ms per question measured on this 2-core machine under load."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
