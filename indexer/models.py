"""The small dataclasses that flow through paracite, from loaders to the API.

Data flows one way: a loader yields a `Document` made of `Block`s, chunking turns blocks
into numbered `Passage`s with their `Sentence`s, the store keeps them, and retrieval
returns `Hit`s wrapped in an `AskResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from indexer.answerability import AnswerEvidence
from indexer.short_answer import ShortAnswer

BlockKind = Literal["paragraph", "heading"]


@dataclass(frozen=True, slots=True)
class Block:
    """A paragraph or a heading as a loader found it in the document's source text.

    `text` is clean text (markup stripped). When it is exactly `source[start:end]`,
    `offsets` is None; otherwise `offsets[i]` is the source offset of `text[i]`.
    """

    kind: BlockKind
    text: str
    start: int
    end: int
    offsets: Sequence[int] | None = None  # an array("q") where a loader gives them
    page: int | None = None
    level: int = 1

    def source_offset(self, index: int) -> int:
        """Source offset of position `index` in `text` (`index == len(text)` maps to the end)."""
        if self.offsets is None:
            return self.start + index
        if index >= len(self.text):
            return self.offsets[-1] + 1 if self.offsets else self.end
        return self.offsets[index]

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """Source span covering `text[start:end]`."""
        if end <= start:
            at = self.source_offset(start)
            return at, at
        return self.source_offset(start), self.source_offset(end - 1) + 1


@dataclass(slots=True)
class Document:
    """A loaded document: the text that spans point into, and its blocks in reading order."""

    doc_id: str
    title: str
    source: str
    blocks: list[Block]
    format: str
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence of a passage: offsets inside the passage text and in the source text."""

    text: str
    start: int
    end: int
    char_start: int
    char_end: int


@dataclass(frozen=True, slots=True)
class Passage:
    """The unit that is embedded and cited: a paragraph, or a window of a long one."""

    doc_id: str
    title: str
    paragraph: int
    section: str | None
    page: int | None
    text: str
    char_start: int
    char_end: int
    sentences: tuple[Sentence, ...]
    window: int = 0


@dataclass(frozen=True, slots=True)
class Hit:
    """A passage returned for a query, with the sentence in it that answers best."""

    rank: int
    score: float
    passage: Passage
    best_sentence: Sentence | None
    sentence_score: float = 0.0
    # A source: it holds the answer, or a sentence close enough to the question to be one.
    # The other hits are related passages, shown after the sources and without highlights.
    cited: bool = False

    def to_dict(self) -> dict[str, Any]:
        p = self.passage
        return {
            "rank": self.rank,
            "score": round(self.score, 4),
            "doc_id": p.doc_id,
            "title": p.title,
            "section": p.section,
            "paragraph": p.paragraph,
            "page": p.page,
            "text": p.text,
            "char_start": p.char_start,
            "char_end": p.char_end,
            "answer_start": self.best_sentence.start if self.best_sentence else None,
            "answer_end": self.best_sentence.end if self.best_sentence else None,
            "cited": self.cited,
        }


@dataclass(frozen=True, slots=True)
class Answer:
    """The sentence that answers the question, cited to its passage (1-based rank)."""

    text: str
    passage: int
    doc_id: str
    title: str
    paragraph: int
    char_start: int
    char_end: int
    score: float
    # The answerability model's probability that the sentence answers (indexer.answerability).
    confidence: float
    # The name, date, number, amount or place inside the sentence, when the question asks
    # for one (indexer.short_answer).
    short: ShortAnswer | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "passage": self.passage,
            "doc_id": self.doc_id,
            "title": self.title,
            "paragraph": self.paragraph,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "score": round(self.score, 4),
            "confidence": round(self.confidence, 4),
            "short": self.short.to_dict() if self.short else None,
        }


# Nothing in the collection is even about the question (no sentence passes the cosine gate).
NO_ANSWER_MESSAGE = "Nothing in the indexed documents answers this."
# The collection discusses the subject, but its best sentence is unlikely to answer.
NOT_ANSWERED_MESSAGE = (
    "The indexed documents discuss this subject but do not seem to answer the question."
)


@dataclass(frozen=True, slots=True)
class Assessment:
    """The answerability model's view of the best sentence, offered as the answer or not.

    Kept on `AskResult` for evaluation (the threshold curve needs the candidates that were
    turned down); not part of the JSON.
    """

    candidate: Answer
    evidence: AnswerEvidence
    confidence: float
    answered: bool
    # The reader's logit on the candidate (None when the reader is off, `indexer.reader`).
    reader_logit: float | None = None


@dataclass(frozen=True, slots=True)
class RankedPassage:
    """A passage row of the index as ranked by the search (`Searcher.rank`, `ranked=`)."""

    row: int
    doc_id: str
    score: float


@dataclass(frozen=True, slots=True)
class AskResult:
    """What `ask` and `search` return: the answer (or why there is none) and the passages."""

    query: str
    answer: Answer | None
    no_answer_reason: str | None
    hits: list[Hit]
    took_ms: float
    # The best passages beyond the hits, when asked for (`ranked=`); not part of the JSON.
    ranking: tuple[RankedPassage, ...] = ()
    # How the best sentence was judged (None when nothing passed the cosine gate or no
    # answer was wanted); not part of the JSON.
    assessment: Assessment | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "answer": self.answer.to_dict() if self.answer else None,
            "no_answer_reason": self.no_answer_reason,
            "passages": [hit.to_dict() for hit in self.hits],
            "took_ms": round(self.took_ms, 2),
        }


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """A document of the collection, as listed."""

    doc_id: str
    title: str
    format: str
    paragraphs: int
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "title": self.title,
            "format": self.format,
            "paragraphs": self.paragraphs,
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True)
class DocumentBlock:
    """A block of a stored document: a numbered paragraph, or a heading (number None)."""

    kind: BlockKind
    number: int | None
    section: str | None
    page: int | None
    text: str
    char_start: int
    char_end: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "paragraph": self.number,
            "section": self.section,
            "page": self.page,
            "text": self.text,
            "char_start": self.char_start,
            "char_end": self.char_end,
        }


@dataclass(frozen=True, slots=True)
class DocumentView:
    """A stored document in full: its info, its blocks, and the source text spans point into."""

    info: DocumentInfo
    blocks: list[DocumentBlock]
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.info.to_dict(),
            "blocks": [block.to_dict() for block in self.blocks],
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What an index holds, from its manifest."""

    path: str
    model: str
    backend: str
    dimension: int
    documents: int
    passages: int
    sentences: int
    built_at: str
    format_version: int
    chunking: dict[str, Any]
    sentence_vectors: str = "standalone"
    passage_vectors: str = "standalone"
    device: str = "cpu"  # where the model that built the index ran

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "model": self.model,
            "backend": self.backend,
            "dimension": self.dimension,
            "documents": self.documents,
            "passages": self.passages,
            "sentences": self.sentences,
            "sentence_vectors": self.sentence_vectors,
            "passage_vectors": self.passage_vectors,
            "device": self.device,
            "built_at": self.built_at,
            "format_version": self.format_version,
            "chunking": self.chunking,
        }


@dataclass(slots=True)
class FileReport:
    """What happened to one file during an indexing run."""

    path: str
    status: Literal["added", "updated", "unchanged", "removed", "skipped", "warning"]
    reason: str = ""
    passages: int = 0


@dataclass(slots=True)
class IndexReport:
    """Summary of an indexing run."""

    files: list[FileReport] = field(default_factory=list)
    embedded: int = 0
    reused_embeddings: int = 0
    seconds: float = 0.0
    up_to_date: bool = False
    # Why the live generation could not be reused and the index was rebuilt from the files.
    repaired: str = ""
    # Segments of the index after the run, and how many the run merged into others.
    segments: int = 0
    merged: int = 0

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)
