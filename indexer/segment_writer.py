"""Writing one segment as documents stream in, holding no more than a batch of them.

Metadata rows go to SQLite, vectors are appended to their `.npy` files, and BM25 postings
are gathered as compact arrays; `finish` writes the postings, the sentence offsets and the
ANN structure (built from the memory-mapped passage vectors).
"""

from __future__ import annotations

import shutil
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.chunking import ChunkedDocument
from indexer.lexical import LexicalWriter
from indexer.models import Passage
from indexer.store import (
    LEXICAL,
    PASSAGE_VECTORS,
    SENTENCE_LEXICAL,
    SENTENCE_VECTORS,
    FileRecord,
    MetadataStore,
    finish_segment,
    new_segment,
    write_sentence_offsets,
)
from indexer.text import lexical_terms
from indexer.vectors import SENTENCE_DTYPE, AnnConfig, VectorFileWriter, ann_path_of


def lexical_text(passage: Passage) -> str:
    """What a passage's BM25 postings are made of: its title, section and text."""
    return " ".join(part for part in (passage.title, passage.section, passage.text) if part)


@dataclass(frozen=True, slots=True)
class WrittenSegment:
    """A finished segment: its name, what it holds and its ANN structure, if any."""

    name: str
    documents: int
    passages: int
    sentences: int
    ann: AnnConfig | None


class SegmentWriter:
    """A segment being written; `add` documents with their vectors, then `finish` (or
    `abandon`: what was written is removed)."""

    def __init__(self, index_dir: Path, dimension: int) -> None:
        self.folder = new_segment(index_dir)
        try:
            self._store = MetadataStore.create(self.folder)
            self._passage_vectors = VectorFileWriter(
                self.folder / PASSAGE_VECTORS, dimension, np.float32
            )
            self._sentence_vectors = VectorFileWriter(
                self.folder / SENTENCE_VECTORS, dimension, SENTENCE_DTYPE
            )
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self._lexical = LexicalWriter()
        self._sentence_lexical = LexicalWriter()
        self._sentence_counts = array("q")
        self.documents = 0

    @property
    def passages(self) -> int:
        return len(self._sentence_counts)

    def add(
        self,
        documents: Sequence[tuple[ChunkedDocument, FileRecord]],
        passage_vectors: np.ndarray,
        sentence_vectors: np.ndarray,
    ) -> None:
        """Append documents (in row order) and the vectors of their passages and sentences."""
        passages = [p for chunked, _ in documents for p in chunked.passages]
        sentences = [s for p in passages for s in p.sentences]
        if (len(passage_vectors), len(sentence_vectors)) != (len(passages), len(sentences)):
            raise ValueError("one vector per passage and per sentence is needed")
        self._store.write_documents(documents)
        self._passage_vectors.append(passage_vectors)
        self._sentence_vectors.append(sentence_vectors)
        for passage in passages:
            self._lexical.add(lexical_terms(lexical_text(passage)))
            self._sentence_counts.append(len(passage.sentences))
        for sentence in sentences:
            self._sentence_lexical.add(lexical_terms(sentence.text))
        self.documents += len(documents)

    def finish(
        self,
        ann_for: Callable[[int], AnnConfig | None],
        checkpoint: Callable[[str], None] = lambda stage: None,
        on_progress: Callable[[int], None] | None = None,
    ) -> WrittenSegment:
        """Write what is left and make the segment durable under its final name.

        `ann_for(passages)` says which ANN structure the segment gets, if any.
        """
        advance = on_progress or (lambda amount: None)
        try:
            self._store.close()
            write_sentence_offsets(self.folder, self._sentence_counts)
            advance(1)
            checkpoint("write")
            self._lexical.write(self.folder / LEXICAL)
            self._sentence_lexical.write(self.folder / SENTENCE_LEXICAL)
            # The postings are written: let their memory go before the ANN structure grows.
            self._lexical = self._sentence_lexical = LexicalWriter()
            advance(1)
            self._passage_vectors.close()
            self._sentence_vectors.close()
            ann = ann_for(self.passages)
            if ann is not None and self.passages:
                vectors = self.folder / PASSAGE_VECTORS
                ann.write_from_file(vectors, ann_path_of(vectors))
            advance(1)
            name = finish_segment(self.folder)
        except BaseException:
            self.abandon()
            raise
        sentences = int(sum(self._sentence_counts))
        return WrittenSegment(name, self.documents, self.passages, sentences, ann)

    def abandon(self) -> None:
        for closing in (
            self._store.close,
            self._passage_vectors.close,
            self._sentence_vectors.close,
        ):
            try:
                closing()
            except Exception:  # noqa: BLE001, S110 - removing it all anyway
                pass
        shutil.rmtree(self.folder, ignore_errors=True)
