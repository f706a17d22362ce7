"""Hybrid retrieval and answers: the one search API shared by the CLI, the JSON API and pages."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import bm25s
import numpy as np
import threadpoolctl

from indexer.answer import (
    expected_answer_type,
    has_new_answer_of_type,
    is_authorship_question,
    sentence_score,
)
from indexer.embedding import Embedder, load_embedder
from indexer.errors import DocumentNotFound, IndexCorrupt, InvalidQuery, ModelMismatch
from indexer.models import (
    NO_ANSWER_MESSAGE,
    Answer,
    AskResult,
    DocumentInfo,
    DocumentView,
    Hit,
    IndexStats,
    Passage,
)
from indexer.store import (
    LEXICAL,
    PASSAGE_VECTORS,
    SENTENCE_LEXICAL,
    SENTENCE_VECTORS,
    Manifest,
    file_stamps,
    open_meta,
    read_blocks,
    read_lexical,
    read_passages,
    read_vectors,
    reading,
    require_generation,
    vectors_of,
)
from indexer.text import lexical_terms

Mode = Literal["hybrid", "bm25", "dense"]
MODES: tuple[Mode, ...] = ("hybrid", "bm25", "dense")
MAX_QUERY_CHARS = 1000
MAX_K = 50
# Lowest question-sentence cosine that counts as an answer, by how sentence vectors were
# made: below both, off-topic questions (at most 0.26 on the seeds); above, 99% of SQuAD's.
# In-context vectors sit about 0.05 lower for the same sentences (eval/reports/README.md).
ANSWER_THRESHOLDS = {"standalone": 0.35, "in-context": 0.31}
# Passages whose sentences are compared with the question, per signal (see Searcher._score).
CANDIDATES = 200


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


@dataclass(frozen=True, slots=True)
class _Scores:
    fused: np.ndarray  # per passage
    sentence_dense: np.ndarray  # per sentence, cosine
    sentence_lexical: np.ndarray  # per sentence, BM25 normalised by the query's best


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


class Searcher:
    """An open index: answers questions and serves documents. Safe to share between threads."""

    def __init__(
        self,
        index_dir: Path,
        embedder: Embedder | None = None,
        answer_threshold: float | None = None,
        weights: FusionWeights | None = None,
    ) -> None:
        generation = require_generation(index_dir)
        self.index_dir = index_dir
        self.generation = generation
        self.manifest = Manifest.read(generation)
        self._stamps = file_stamps(generation)
        self.manifest.check_compatible()
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
        self.weights = weights or FusionWeights()
        self._db = open_meta(generation, readonly=True)
        self._lock = threading.Lock()
        with reading(generation):
            ranges = self._db.execute(
                "SELECT first_sentence, sentence_count FROM passages ORDER BY id"
            ).fetchall()
        self._first_sentence = np.array([r[0] for r in ranges], dtype=np.int64)
        self._sentence_count = np.array([r[1] for r in ranges], dtype=np.int64)
        self._passage_vectors = vectors_of(read_vectors(generation / PASSAGE_VECTORS))
        self._sentence_vectors = vectors_of(read_vectors(generation / SENTENCE_VECTORS))
        self._sentence_passage = np.repeat(
            np.arange(len(ranges), dtype=np.int64), [r[1] for r in ranges]
        )
        if len(self._passage_vectors) != len(ranges) or len(self._sentence_vectors) != len(
            self._sentence_passage
        ):
            raise IndexCorrupt(f"index at {generation} is inconsistent: vector counts differ")
        with reading(generation):
            self._doc_first_passage, self._author_passage = self._read_documents_layout()
        self._lexical = read_lexical(generation / LEXICAL, len(ranges))
        self._sentence_lexical = read_lexical(
            generation / SENTENCE_LEXICAL, len(self._sentence_passage)
        )

    def _read_documents_layout(self) -> tuple[np.ndarray, dict[int, int]]:
        """Where each document's passages start, and each document's author-note passage."""
        rows = self._db.execute(
            "SELECT d.doc_id, d.metadata, MIN(p.id) FROM documents d "
            "JOIN passages p USING (doc_id) GROUP BY d.doc_id ORDER BY MIN(p.id)"
        ).fetchall()
        author_passage: dict[int, int] = {}
        for position, (doc_id, metadata, _) in enumerate(rows):
            number = json.loads(metadata).get("author_paragraph")
            if number is not None:
                found = self._db.execute(
                    "SELECT MIN(id) FROM passages WHERE doc_id = ? AND paragraph = ?",
                    (doc_id, number),
                ).fetchone()
                if found and found[0] is not None:
                    author_passage[position] = int(found[0])
        return np.array([r[2] for r in rows], dtype=np.int64), author_passage

    @classmethod
    def open(
        cls,
        index_dir: Path,
        embedder: Embedder | None = None,
        answer_threshold: float | None = None,
        weights: FusionWeights | None = None,
    ) -> Searcher:
        """Open the live generation of the index at `index_dir` (loading its model if needed)."""
        return cls(index_dir, embedder, answer_threshold, weights)

    def close(self) -> None:
        self._db.close()

    def check(self) -> None:
        """IndexCorrupt if the opened generation was removed, changed, or its metadata fails.

        Cheap enough for every health check: stat calls and one small query.
        """
        if not self.generation.is_dir():
            raise IndexCorrupt(
                f"the index generation this server opened ({self.generation.name}) was "
                "removed; rebuild the index with `paracite index <folder> --rebuild`"
            )
        if file_stamps(self.generation) != self._stamps:
            raise IndexCorrupt(
                f"files of the index generation {self.generation} changed after it was opened "
                "(generations are never modified); rebuild the index with `paracite index "
                "<folder> --rebuild`"
            )
        with self._lock, reading(self.generation):
            self._db.execute("SELECT COUNT(*) FROM documents").fetchone()

    # -- questions ---------------------------------------------------------------------------

    def ask(self, query: str, k: int = 5, mode: Mode = "hybrid") -> AskResult:
        """The passages that best answer `query`, and the answering sentence if good enough."""
        return self._run(query, k, mode, want_answer=True)

    def search(self, query: str, k: int = 5, mode: Mode = "hybrid") -> AskResult:
        """The passages alone (no answer is chosen)."""
        return self._run(query, k, mode, want_answer=False)

    def _run(self, query: str, k: int, mode: Mode, want_answer: bool) -> AskResult:
        started = time.perf_counter()
        question = validate_query(query, k)
        if mode not in MODES:
            raise InvalidQuery(f"mode must be one of {', '.join(MODES)}")
        if len(self._passage_vectors) == 0:
            reason = NO_ANSWER_MESSAGE if want_answer else None
            return AskResult(question, None, reason, [], _ms(started))
        scores = self._score(question, mode)
        author_passage = self._author_of_best_document(question, scores.fused)
        if author_passage is not None:
            # "Who wrote ...?" is answered by the author note of the document asked about.
            scores.fused[author_passage] = scores.fused.max() + 1e-4
        answer_type = expected_answer_type(question)
        hits = []
        relevant = False
        for rank, passage_id in enumerate(_top_k(scores.fused, k), start=1):
            passage = self._passage(int(passage_id))
            passage_score = float(scores.fused[passage_id])
            first = int(self._first_sentence[passage_id])
            best, best_score = None, float("-inf")
            for offset, sentence in enumerate(passage.sentences):
                dense = float(scores.sentence_dense[first + offset])
                relevant = relevant or dense >= self.answer_threshold
                score = sentence_score(
                    dense,
                    float(scores.sentence_lexical[first + offset]),
                    passage_score,
                    answer_type is not None
                    and has_new_answer_of_type(answer_type, sentence.text, question),
                )
                if score > best_score:
                    best, best_score = sentence, score
            hits.append(Hit(rank, passage_score, passage, best, best_score))
        if not relevant:
            # Nothing is close enough to the question: no sentence is offered as an answer.
            hits = [replace(hit, best_sentence=None) for hit in hits]
        answer = (
            _choose_answer(hits, prefer_first=author_passage is not None) if want_answer else None
        )
        reason = NO_ANSWER_MESSAGE if want_answer and answer is None else None
        return AskResult(question, answer, reason, hits, _ms(started))

    def _author_of_best_document(self, question: str, fused: np.ndarray) -> int | None:
        if not self._author_passage or not is_authorship_question(question):
            return None
        best_document = int(np.argmax(np.maximum.reduceat(fused, self._doc_first_passage)))
        return self._author_passage.get(best_document)

    def _score(self, question: str, mode: Mode) -> _Scores:
        """Score every passage; sentence cosines are computed for the candidates only.

        Candidates are the passages best by their own embedding and BM25, and those holding
        the sentences best by BM25 (CANDIDATES of each). Comparing the question with every
        sentence cost as much as embedding it; the other passages keep their partial score,
        ranked below every candidate.
        """
        terms = list(set(lexical_terms(question)))
        query_vector = self.embedder.embed_query(question)
        dense_passages = self._passage_vectors @ query_vector
        lexical = _normalised(_bm25(self._lexical, terms, len(dense_passages)))
        sentence_lexical = _normalised(
            _bm25(self._sentence_lexical, terms, len(self._sentence_passage))
        )
        w = self.weights
        if mode == "bm25":
            partial = lexical
        elif mode == "dense":
            partial = dense_passages
        else:
            partial = w.passage * dense_passages + w.lexical * lexical
        candidates = np.union1d(
            _top_k(partial, CANDIDATES),
            self._sentence_passage[_top_k(sentence_lexical, CANDIDATES)]
            if mode != "dense"
            else np.zeros(0, dtype=np.int64),
        )
        # rows: the candidates' sentences, one passage after another; offsets: where each
        # candidate's sentences begin in rows.
        counts = self._sentence_count[candidates]
        offsets = np.cumsum(counts) - counts
        rows = np.repeat(self._first_sentence[candidates] - offsets, counts) + np.arange(
            counts.sum()
        )
        dense_sentences = np.full(len(self._sentence_passage), -1.0, dtype=np.float32)
        dense_sentences[rows] = self._sentence_vectors[rows] @ query_vector
        if mode == "bm25":
            candidate_scores = lexical[candidates]
        elif mode == "dense":
            best_dense = np.maximum.reduceat(dense_sentences[rows], offsets)
            candidate_scores = (
                w.passage * dense_passages[candidates] + w.sentence * best_dense
            ) / (w.passage + w.sentence)
        else:
            best_sentence = np.maximum.reduceat(
                dense_sentences[rows] + w.sentence_lexical * sentence_lexical[rows], offsets
            )
            candidate_scores = partial[candidates] + w.sentence * best_sentence
        # Non-candidates keep their order by the partial score, below every candidate.
        fused = partial - float(partial.max()) + float(candidate_scores.min()) - 1.0
        fused[candidates] = candidate_scores
        return _Scores(fused.astype(np.float32), dense_sentences, sentence_lexical)

    # -- documents ---------------------------------------------------------------------------

    def stats(self) -> IndexStats:
        return self.manifest.stats(self.index_dir)

    def documents(self) -> list[DocumentInfo]:
        with self._lock, reading(self.generation):
            rows = self._db.execute(
                "SELECT doc_id, title, format, paragraphs, metadata FROM documents ORDER BY doc_id"
            ).fetchall()
        return [DocumentInfo(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def document(self, doc_id: str) -> DocumentView:
        with self._lock, reading(self.generation):
            row = self._db.execute(
                "SELECT doc_id, title, format, paragraphs, metadata, source "
                "FROM documents WHERE doc_id = ?",
                (doc_id,),
            ).fetchone()
            if row is None:
                raise DocumentNotFound(f"no document {doc_id!r} in the index")
            blocks = read_blocks(self._db, doc_id)
        info = DocumentInfo(row[0], row[1], row[2], row[3], json.loads(row[4]))
        return DocumentView(info, blocks, row[5])

    def _passage(self, passage_id: int) -> Passage:
        with self._lock, reading(self.generation):
            return read_passages(self._db, "p.id = ?", (passage_id,))[0]


def _one_thread_per_query() -> None:
    """Questions are answered one per request thread, at most one per core at a time.
    Letting torch or BLAS also spread each one over every core makes concurrent questions
    thrash: 960 ms against 67 ms per question measured on this 2-core machine under load."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def _bm25(index: bm25s.BM25 | None, terms: list[str], size: int) -> np.ndarray:
    known = [term for term in terms if index is not None and term in index.vocab_dict]
    if index is None or not known:
        return np.zeros(size, dtype=np.float32)
    return np.asarray(index.get_scores(known), dtype=np.float32)


def _normalised(scores: np.ndarray) -> np.ndarray:
    top = float(scores.max()) if len(scores) else 0.0
    return scores / top if top > 0 else scores


def _choose_answer(hits: list[Hit], prefer_first: bool = False) -> Answer | None:
    """The best-scoring answer sentence among the hits, or the first hit's when preferred."""
    candidates = [hit for hit in hits if hit.best_sentence is not None]
    if not candidates:
        return None
    hit = max(candidates, key=lambda h: h.sentence_score)
    if prefer_first and candidates[0].rank == 1:
        hit = candidates[0]
    sentence = hit.best_sentence
    assert sentence is not None
    p = hit.passage
    return Answer(
        text=sentence.text,
        passage=hit.rank,
        doc_id=p.doc_id,
        title=p.title,
        paragraph=p.paragraph,
        char_start=sentence.char_start,
        char_end=sentence.char_end,
        score=hit.sentence_score,
    )


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top], kind="stable")]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
