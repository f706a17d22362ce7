"""A generation's segments read as one index, and when to merge them.

Rows are numbered segment after segment in the order the manifest lists them: the passage
rows of segment i start where those of segment i - 1 end (its `base`), and likewise the
sentence rows. Documents are contiguous in their segment, so a document's rows are one
range here too. Rows of deleted documents stay in their segment until it is merged; they
are left out of every search and listing.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from indexer.errors import IndexCorrupt
from indexer.lexical import LexicalIndex, LexicalSegment
from indexer.models import DocumentInfo, DocumentView, Passage
from indexer.ranking import RowRanges
from indexer.store import (
    LEXICAL,
    PASSAGE_VECTORS,
    SENTENCE_LEXICAL,
    SENTENCE_VECTORS,
    DocumentLayout,
    Manifest,
    MetadataStore,
    SegmentEntry,
    read_sentence_offsets,
    segment_paths,
)
from indexer.vectors import AnnConfig, FaissVectorIndex, SegmentedVectors

T = TypeVar("T")

# Segments smaller than this many passages are all in the lowest tier.
FLOOR_PASSAGES = 1000
# A segment more than this share of whose passages are deleted is rewritten without them.
MAX_DELETED_SHARE = 0.5


class SegmentedStore:
    """The metadata of every segment of a generation as one store."""

    def __init__(self, stores: Sequence[MetadataStore], entries: Sequence[SegmentEntry]) -> None:
        self._stores = list(stores)
        self._bases = np.cumsum([0] + [entry.passages for entry in entries]).astype(np.int64)
        self._entries = list(entries)

    @classmethod
    def open(cls, generation: Path, manifest: Manifest) -> SegmentedStore:
        stores: list[MetadataStore] = []
        try:
            for entry, folder in zip(
                manifest.segments, segment_paths(generation, manifest), strict=True
            ):
                stores.append(MetadataStore.open(folder, entry.deleted))
        except BaseException:
            for store in stores:
                store.close()
            raise
        return cls(stores, manifest.segments)

    def close(self) -> None:
        for store in self._stores:
            store.close()

    @property
    def rows(self) -> int:
        """Passage rows over all segments, deleted ones included."""
        return int(self._bases[-1])

    def check_counts(self) -> None:
        """IndexCorrupt unless each segment's metadata holds the rows its entry says."""
        for store, entry in zip(self._stores, self._entries, strict=True):
            if store.counts()[1] != entry.passages:
                raise IndexCorrupt(f"index segment {entry.name} is inconsistent with its manifest")

    @property
    def bases(self) -> np.ndarray:
        """Where each segment's passage rows start, then the total."""
        return self._bases

    def segment_deleted_rows(self, position: int) -> np.ndarray:
        """The rows (in the segment's own numbering) of the documents deleted from the
        segment at this position, as [start, end) ranges."""
        return self._stores[position].document_rows(self._entries[position].deleted)[0]

    def passages(self, rows: Sequence[int]) -> list[Passage]:
        """The passages at these rows, in the order asked, with their sentences."""
        return self._by_segment(rows, lambda store, local: store.passages(local))

    def passage_doc_ids(self, rows: Sequence[int]) -> list[str]:
        return self._by_segment(rows, lambda store, local: store.passage_doc_ids(local))

    def scope_ranges(
        self, doc: str | None, folder_prefix: str | None, fmt: str | None
    ) -> np.ndarray:
        """The passage rows of the live documents matching every given condition."""
        return _ranges(
            [
                store.scope_ranges(doc, folder_prefix, fmt) + base
                for store, base in zip(self._stores, self._bases, strict=False)
            ]
        ).bounds

    def paragraph_ranges(self, paragraphs: Sequence[tuple[str, int]]) -> np.ndarray:
        return _ranges(
            [
                store.paragraph_ranges(paragraphs) + base
                for store, base in zip(self._stores, self._bases, strict=False)
            ]
        ).bounds

    def has_document(self, doc_id: str) -> bool:
        return any(store.has_document(doc_id) for store in self._stores)

    def formats(self) -> list[str]:
        return sorted({fmt for store in self._stores for fmt in store.formats()})

    def documents(self) -> list[DocumentInfo]:
        found = [info for store in self._stores for info in store.documents()]
        return sorted(found, key=lambda info: info.doc_id)

    def document(self, doc_id: str) -> DocumentView | None:
        for store in self._stores:
            view = store.document(doc_id)
            if view is not None:
                return view
        return None

    def _by_segment(
        self, rows: Sequence[int], read: Callable[[MetadataStore, list[int]], list[T]]
    ) -> list[T]:
        """`read` on each segment's share of `rows` (local row numbers), in the order asked."""
        wanted = np.asarray(rows, dtype=np.int64)
        if len(self._stores) == 1:
            return read(self._stores[0], [int(row) for row in wanted])
        at = np.searchsorted(self._bases, wanted, side="right") - 1
        out: list[T | None] = [None] * len(wanted)
        for segment in np.unique(at):
            positions = np.flatnonzero(at == segment)
            local = [int(row) for row in wanted[positions] - self._bases[segment]]
            for position, value in zip(positions, read(self._stores[segment], local), strict=True):
                out[position] = value
        return [value for value in out if value is not None]


class SegmentReader:
    """What search reads of one segment that never changes: its vectors (memory-mapped), ANN
    structure, postings, sentence offsets and document layout.

    Opened once per process and shared by every generation listing the segment, so that a
    server moving to a new generation opens only the segments it has not seen (the ANN
    structure and vocabularies of a large segment take seconds to read).
    """

    _shared: weakref.WeakValueDictionary[tuple[object, ...], SegmentReader] = (
        weakref.WeakValueDictionary()
    )
    _shared_lock = threading.Lock()

    def __init__(self, folder: Path, entry: SegmentEntry, ann: AnnConfig | None) -> None:
        self.offsets = read_sentence_offsets(folder)
        self.passage_vectors = FaissVectorIndex.open(folder / PASSAGE_VECTORS, ann)
        self.sentence_vectors = FaissVectorIndex.open(folder / SENTENCE_VECTORS)
        if (
            len(self.offsets) - 1 != entry.passages
            or len(self.passage_vectors) != entry.passages
            or int(self.offsets[-1]) != entry.sentences
            or len(self.sentence_vectors) != entry.sentences
        ):
            raise IndexCorrupt(f"index segment {folder} is inconsistent: vector counts differ")
        self.lexical = LexicalSegment.open(folder / LEXICAL, entry.passages)
        self.sentence_lexical = LexicalSegment.open(folder / SENTENCE_LEXICAL, entry.sentences)
        with MetadataStore.open(folder) as store:
            self.layout = store.document_layout()

    @classmethod
    def shared(
        cls, folder: Path, entry: SegmentEntry, ann: AnnConfig | None, stamps: object
    ) -> SegmentReader:
        """The reader of a segment, opened now or shared with generations opened before
        (while any of them is open); `stamps` (its files' sizes and times) must match."""
        key = (str(folder), None if ann is None else tuple(ann.to_dict().items()), stamps)
        with cls._shared_lock:
            reader = cls._shared.get(key)
            if reader is None:
                reader = cls(folder, entry, ann)
                cls._shared[key] = reader
            return reader


@dataclass(slots=True)
class SegmentedIndex:
    """Everything search reads from a generation, opened over all its segments."""

    store: SegmentedStore
    readers: list[SegmentReader]
    passage_vectors: FaissVectorIndex | SegmentedVectors
    sentence_vectors: FaissVectorIndex | SegmentedVectors
    lexical: LexicalIndex
    sentence_lexical: LexicalIndex
    sentence_offsets: np.ndarray  # int64: where each passage row's sentences start, then the total
    layout: DocumentLayout

    @classmethod
    def open(
        cls,
        generation: Path,
        manifest: Manifest,
        ann_min_passages: int,
        stamps: dict[str, tuple[int, int]] | None = None,
    ) -> SegmentedIndex:
        """The generation's structures; a segment's ANN structure is used when it holds at
        least `ann_min_passages` passages. `stamps` are the generation's `file_stamps`."""
        store = SegmentedStore.open(generation, manifest)
        try:
            return cls._open(generation, manifest, store, ann_min_passages, stamps or {})
        except BaseException:
            store.close()
            raise

    @classmethod
    def _open(
        cls,
        generation: Path,
        manifest: Manifest,
        store: SegmentedStore,
        ann_min_passages: int,
        stamps: dict[str, tuple[int, int]],
    ) -> SegmentedIndex:
        store.check_counts()
        readers = []
        passage_parts, sentence_parts, offsets = [], [], []
        deleted_parts: list[np.ndarray] = []  # passage rows of deleted documents, all segments
        sentence_base = 0
        for entry, folder in zip(
            manifest.segments, segment_paths(generation, manifest), strict=True
        ):
            ann = (
                AnnConfig.from_dict(entry.ann)
                if entry.ann is not None and entry.passages >= ann_min_passages
                else None
            )
            prefix = f"{folder.parent.name}/{folder.name}/"
            own_stamps = tuple(sorted(v for k, v in stamps.items() if k.startswith(prefix)))
            reader = SegmentReader.shared(folder, entry, ann, own_stamps)
            readers.append(reader)
            # Views of the shared vectors, each with this generation's deletions.
            passages, sentences = reader.passage_vectors.view(), reader.sentence_vectors.view()
            if entry.deleted:
                deleted = store.segment_deleted_rows(len(readers) - 1)
                passages.remove(RowRanges(deleted).rows())
                sentences.remove(_sentence_ranges(reader.offsets, deleted).rows())
                deleted_parts.append(deleted + store.bases[len(readers) - 1])
            passage_parts.append(passages)
            sentence_parts.append(sentences)
            offsets.append(np.asarray(reader.offsets[:-1], dtype=np.int64) + sentence_base)
            sentence_base += entry.sentences
        offsets.append(np.array([sentence_base], dtype=np.int64))
        sentence_offsets = np.concatenate(offsets)
        deleted_passages = _ranges(deleted_parts)
        deleted_sentences = _sentence_ranges(sentence_offsets, deleted_passages.bounds)
        return cls(
            store,
            readers,
            _one_or_all(passage_parts, manifest.dimension),
            _one_or_all(sentence_parts, manifest.dimension),
            LexicalIndex([r.lexical for r in readers], deleted_passages),
            LexicalIndex([r.sentence_lexical for r in readers], deleted_sentences),
            sentence_offsets,
            _joined_layout([r.layout for r in readers], store.bases),
        )

    def close(self) -> None:
        self.store.close()


def _joined_layout(layouts: Sequence[DocumentLayout], bases: np.ndarray) -> DocumentLayout:
    """The document layouts of segments as one, over rows numbered segment after segment."""
    starts: list[np.ndarray] = []
    author_passage: dict[int, int] = {}
    documents = 0
    for layout, base in zip(layouts, bases, strict=False):
        starts.append(layout.first_passage + base)
        for position, row in layout.author_passage.items():
            author_passage[position + documents] = row + int(base)
        documents += len(layout.first_passage)
    first = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    return DocumentLayout(first, author_passage)


def _one_or_all(
    parts: list[FaissVectorIndex], dimension: int
) -> FaissVectorIndex | SegmentedVectors:
    if not parts:
        return FaissVectorIndex.empty(dimension)
    return parts[0] if len(parts) == 1 else SegmentedVectors(parts)


def _sentence_ranges(offsets: np.ndarray, passage_ranges: np.ndarray) -> RowRanges:
    """The sentence rows of the passages in these [start, end) ranges, as ranges."""
    bounds = np.stack(
        [offsets[passage_ranges[:, 0]], offsets[passage_ranges[:, 1]]], axis=1
    ).astype(np.int64)
    return RowRanges(bounds.reshape(-1, 2))


def _ranges(parts: list[np.ndarray]) -> RowRanges:
    """Sorted, disjoint [start, end) ranges from pieces that do not overlap."""
    if not parts:
        return RowRanges(np.zeros((0, 2), dtype=np.int64))
    bounds = np.concatenate(parts).reshape(-1, 2)
    return RowRanges(bounds[np.argsort(bounds[:, 0], kind="stable")])


# -- merging ----------------------------------------------------------------------------------


def tier(passages: int) -> int:
    """A segment's tier: 0 below FLOOR_PASSAGES, then one per factor of ten."""
    return max(0, math.floor(math.log10(max(passages, 1) / FLOOR_PASSAGES)) + 1)


def plan_merge(
    entries: Sequence[SegmentEntry], wants_ann: Callable[[int], bool], per_tier: int
) -> list[SegmentEntry]:
    """The segments the next merge should rewrite into one (none: nothing to merge).

    First any segment mostly deleted, or whose ANN structure no longer fits its size under
    the settings (`wants_ann(passages)`); then, in the lowest tier holding `per_tier`
    segments, the smallest `per_tier` of them. Segments of about the same size (a tier:
    sizes within a factor of ten) are merged when there are `per_tier` of them, as in
    Lucene's tiered merge policy: every passage is then rewritten about once per tier, and
    a collection of n passages has O(log n) tiers.
    """
    for entry in entries:
        if entry.passages and entry.deleted_passages > MAX_DELETED_SHARE * entry.passages:
            return [entry]
        if (entry.ann is not None) != wants_ann(entry.live_passages):
            return [entry]
    by_tier: dict[int, list[SegmentEntry]] = {}
    for entry in entries:
        by_tier.setdefault(tier(entry.live_passages), []).append(entry)
    for level in sorted(by_tier):
        crowd = by_tier[level]
        if len(crowd) >= per_tier:
            return sorted(crowd, key=lambda entry: entry.live_passages)[:per_tier]
    return []
