"""An indexing run: discover files, load and chunk what changed, embed it into a new segment,
publish, merge segments when there are too many."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from indexer.chunking import ChunkedDocument, ChunkingOptions, chunk_document
from indexer.embedding import Embedder, embed_cached, load_embedder
from indexer.embedding_cache import EmbeddingCache, cache_file
from indexer.errors import REBUILD_HINT, IndexCorrupt, ParaciteError, UnsupportedFile
from indexer.loaders import document_id, find_files
from indexer.loaders.isolated import IsolatedReader
from indexer.models import FileReport, IndexReport, Passage
from indexer.ranking import RowRanges
from indexer.read_ahead import ReadAhead
from indexer.segment_writer import SegmentWriter
from indexer.segments import plan_merge
from indexer.settings import PassageVectors, SentenceVectors, Settings
from indexer.store import (
    FORMAT_VERSION,
    PASSAGE_VECTORS,
    SENTENCE_VECTORS,
    FileRecord,
    Manifest,
    MetadataStore,
    SegmentEntry,
    check_generation,
    current_generation,
    now_iso,
    prune_generations,
    publish_generation,
    read_sentence_offsets,
    segment_path,
    writer_lock,
)
from indexer.text import content_hash
from indexer.vectors import AnnConfig, FaissVectorIndex, ann_config_for

# Passages read before they are embedded and written together: enough for the embedder to
# batch texts of similar length, few enough to bound memory whatever the collection's size.
# While a batch embeds, at most as many more passages are read ahead.
WRITE_BATCH = 512
# Documents copied at once by a merge.
MERGE_BATCH = 256


class Progress(Protocol):
    """What an indexing run reports while it works (the CLI shows it as progress bars)."""

    def start(self, description: str, total: int) -> None: ...
    def advance(self, amount: int = 1) -> None: ...


class NoProgress:
    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass


def passage_embedding_text(passage: Passage) -> str:
    """The text embedded for a passage: its document title gives the paragraph context."""
    return f"{passage.title}\n{passage.text}" if passage.title else passage.text


def _sentence_spans(passage: Passage, embedded_text: str) -> list[tuple[int, int]]:
    """Where the passage's sentences are in the text embedded for it (after any title)."""
    shift = len(embedded_text) - len(passage.text)
    return [(s.start + shift, s.end + shift) for s in passage.sentences]


def _checkpoint(stage: str) -> None:
    """Stop here for good when the crash tests ask to: a test-only hook, not a user setting.

    With PARACITE_TEST_HOLD_AT set to this stage ("scan", "embed", "write", "publish" or
    "merge"), the
    run writes the file named by PARACITE_TEST_HOLD_FILE and waits to be killed, so a test
    can kill it at a known point on any CPU. Unset (always, outside tests) it does nothing.
    """
    if os.environ.get("PARACITE_TEST_HOLD_AT") != stage:
        return
    Path(os.environ["PARACITE_TEST_HOLD_FILE"]).write_text(stage, encoding="utf-8")
    while True:
        time.sleep(1)


def build_index(
    root: Path,
    settings: Settings,
    *,
    rebuild: bool = False,
    progress: Progress | None = None,
    embedder: Embedder | None = None,
) -> IndexReport:
    """Index every supported file under `root` into `settings.index`, reusing unchanged work.

    New and changed files go into one new segment, written as they are read (a batch at a
    time, so memory does not grow with the collection); the documents they replace, and
    those of removed files, are marked deleted in their old segments. The new generation is
    published first, then segments are merged if there are too many (and published again).
    """
    progress = progress or NoProgress()
    started = time.perf_counter()
    root = root.resolve()
    if not root.is_dir():
        raise ParaciteError(f"{root} is not a folder")
    index_dir = settings.index.resolve()
    report = IndexReport()
    with writer_lock(index_dir):
        prune_generations(index_dir)
        # --rebuild never reads the old generation, so it also repairs a broken one.
        previous = None if rebuild else _previous_manifest(index_dir, settings, report)
        embedder = embedder or load_embedder(
            settings.model, settings.backend, cache_dir=settings.cache_dir
        )
        with IndexWriter(index_dir, settings, embedder, report, progress) as writer:
            segments = list(previous.segments) if previous and writer.can_extend(previous) else []
            stored = writer.stored_files(segments)
            scanned = writer.scan(root, {doc: record for doc, (record, _) in stored.items()})
            removed = sorted(set(stored) - scanned.changed - scanned.unchanged)
            for doc_id in removed:
                if not any(f.path == doc_id for f in report.files):
                    report.files.append(FileReport(doc_id, "removed"))
            replaced = {doc: stored[doc][1] for doc in [*removed, *(scanned.changed & set(stored))]}
            segments = writer.with_deletions(segments, replaced)
            if scanned.segment is not None:
                segments.append(scanned.segment)
            changed = previous is None or scanned.segment is not None or bool(replaced)
            changed = changed or len(segments) != len(previous.segments if previous else ())
            if not changed and not writer.plan_merge(segments):
                report.up_to_date = True
                report.segments = len(segments)
                report.seconds = time.perf_counter() - started
                return report
            if changed:
                _checkpoint("publish")
                writer.publish(segments)
            report.segments = len(writer.merge_while_needed(segments))
        prune_generations(index_dir)
        report.seconds = time.perf_counter() - started
        return report


def _previous_manifest(index_dir: Path, settings: Settings, report: IndexReport) -> Manifest | None:
    """The live generation's manifest, or None when there is none or it is broken (then the
    run rebuilds the index and says what it repaired)."""
    generation = current_generation(index_dir)
    if generation is None:
        return None
    try:
        manifest = Manifest.read(generation)
        manifest.check_compatible(settings.model, settings.backend)
        check_generation(generation, manifest)
    except IndexCorrupt as error:
        report.repaired = str(error).removesuffix(f"; {REBUILD_HINT}")
        return None
    return manifest


Loaded = tuple[ChunkedDocument, FileRecord]


@dataclass(frozen=True, slots=True)
class Scanned:
    """What reading the folder found: the new segment of new and changed files (None when
    there were none), their doc ids, and the doc ids of unchanged files."""

    segment: SegmentEntry | None
    changed: set[str]
    unchanged: set[str]


class IndexWriter:
    """The writing side of one indexing run: reads files, writes segments, merges them and
    publishes generations listing them."""

    def __init__(
        self,
        index_dir: Path,
        settings: Settings,
        embedder: Embedder,
        report: IndexReport,
        progress: Progress,
    ) -> None:
        self.index_dir = index_dir
        self.settings = settings
        self.embedder = embedder
        self.report = report
        self.progress = progress
        self.options = ChunkingOptions(
            max_tokens=embedder.window_tokens, overlap=settings.window_overlap
        )
        # In context only where the model pools by mean; the manifest records what was done.
        self.sentence_mode: SentenceVectors = embedder.sentence_mode(settings.sentence_vectors)
        # In-context sentences come from their passage's run: the passage is run anyway.
        self.passage_mode: PassageVectors = "standalone"
        if self.sentence_mode == "standalone" and settings.passage_vectors == "pooled":
            self.passage_mode = "pooled"
        elif self.sentence_mode == "standalone" and settings.passage_vectors == "joined":
            self.passage_mode = "joined" if embedder.joins_pieces else "standalone"
        self._cache = EmbeddingCache(
            cache_file(index_dir, settings.model, settings.backend), embedder.dimension
        )

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cache.close()

    def can_extend(self, previous: Manifest) -> bool:
        """Whether new segments can join the previous generation's (same chunking and
        sentence vectors); otherwise every file is read and embedded into one new segment."""
        return (
            previous.chunking == self.options.to_dict()
            and previous.sentence_vectors == self.sentence_mode
            and previous.passage_vectors == self.passage_mode
        )

    def wants_ann(self, passages: int) -> bool:
        """Whether a segment of this many passages gets an ANN structure."""
        return passages >= self.settings.ann_min_passages

    def ann_for(self, passages: int) -> AnnConfig | None:
        return ann_config_for(passages) if self.wants_ann(passages) else None

    def plan_merge(self, segments: Sequence[SegmentEntry]) -> list[SegmentEntry]:
        """The segments to merge next under the settings (none: nothing to merge)."""
        return plan_merge(segments, self.wants_ann, self.settings.segments_per_tier)

    def stored_files(self, segments: Sequence[SegmentEntry]) -> dict[str, tuple[FileRecord, str]]:
        """The record of every live document of these segments, and its segment's name."""
        stored: dict[str, tuple[FileRecord, str]] = {}
        for entry in segments:
            with MetadataStore.open(self._folder(entry), entry.deleted) as store:
                for doc_id, record in store.file_records().items():
                    stored[doc_id] = (record, entry.name)
        return stored

    def scan(self, root: Path, old_records: dict[str, FileRecord]) -> Scanned:
        """Read new and changed files into a new segment, embedding them a batch at a time.

        Each file is read in a worker process (`IsolatedReader`) under time and memory
        limits, and whatever goes wrong with one file is reported as its skip reason.
        """
        settings, report, progress = self.settings, self.report, self.progress
        discovery = find_files(
            root, exclude=[self.index_dir], follow_external_links=settings.follow_external_links
        )
        for skipped in discovery.skipped:
            report.files.append(FileReport(skipped.path_id, "skipped", skipped.reason))
        _checkpoint("scan")
        max_bytes = int(settings.max_file_mb * 1024 * 1024)
        changed: set[str] = set()
        unchanged: set[str] = set()
        batch: list[Loaded] = []
        segment: SegmentWriter | None = None
        progress.start("Indexing files", len(discovery.files))
        try:
            with (
                IsolatedReader(root, max_bytes, settings.max_file_seconds) as reader,
                ReadAhead(
                    lambda path: self._read(
                        reader,
                        path,
                        document_id(path, root),
                        old_records.get(document_id(path, root)),
                        max_bytes,
                    ),
                    discovery.files,
                    lambda loaded: len(loaded[0].passages) if loaded else 0,
                    WRITE_BATCH,
                ) as files,
            ):
                # The next files are read while a batch embeds (see indexer.read_ahead).
                for path, loaded in files:
                    doc_id = document_id(path, root)
                    progress.advance()
                    if loaded is None:
                        unchanged.add(doc_id)
                        continue
                    if not loaded:
                        continue
                    changed.add(doc_id)
                    batch.append(loaded)
                    if sum(len(chunked.passages) for chunked, _ in batch) >= WRITE_BATCH:
                        segment = segment or SegmentWriter(self.index_dir, self.embedder.dimension)
                        self._embed_into(segment, batch)
                        batch = []
            if batch:
                segment = segment or SegmentWriter(self.index_dir, self.embedder.dimension)
                self._embed_into(segment, batch)
            _checkpoint("embed")
            entry = self._finish(segment) if segment is not None else None
        except BaseException:
            if segment is not None:
                segment.abandon()
            raise
        for doc_id in sorted(unchanged):
            report.files.append(FileReport(doc_id, "unchanged"))
        return Scanned(entry, changed, unchanged)

    def _read(
        self,
        reader: IsolatedReader,
        path: Path,
        doc_id: str,
        old: FileRecord | None,
        max_bytes: int,
    ) -> Loaded | None | Literal[False]:
        """A new or changed file read and chunked; None when it is unchanged, False when it
        was skipped (and reported)."""
        report = self.report
        try:
            stat = path.stat()
            if old and (old.size, old.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                return None
            digest = content_hash(path.read_bytes()) if stat.st_size <= max_bytes else ""
            record = FileRecord(digest, stat.st_size, stat.st_mtime_ns)
            if old and old.content_hash == digest:
                return None
            document = reader.load(path)
            result = chunk_document(document, self.options, self.embedder.count_tokens)
        except FileNotFoundError:
            report.files.append(FileReport(doc_id, "skipped", "file disappeared during indexing"))
            return False
        except UnsupportedFile as error:
            report.files.append(FileReport(doc_id, "skipped", str(error)))
            return False
        except Exception as error:  # noqa: BLE001 - one bad file must not stop the run
            reason = f"could not be read ({type(error).__name__}: {error})"
            report.files.append(FileReport(doc_id, "skipped", reason))
            return False
        if not result.passages:
            report.files.append(FileReport(doc_id, "skipped", "no text found"))
            return False
        report.files.append(
            FileReport(
                doc_id,
                "updated" if old else "added",
                "; ".join(document.warnings),
                len(result.passages),
            )
        )
        return result, record

    def _embed_into(self, segment: SegmentWriter, documents: Sequence[Loaded]) -> None:
        """Embed a batch of documents (through the embedding cache) and add it to `segment`."""
        passages = [p for chunked, _ in documents for p in chunked.passages]
        texts = [passage_embedding_text(p) for p in passages]
        passage_vectors, sentence_vectors, embedded, reused = embed_cached(
            self.embedder,
            self._cache,
            texts,
            [_sentence_spans(p, text) for p, text in zip(passages, texts, strict=True)],
            self.settings.batch_size,
            None,
            in_context=self.sentence_mode == "in-context",
            pooled=self.passage_mode == "pooled",
            joined=self.passage_mode == "joined",
        )
        self.report.embedded += embedded
        self.report.reused_embeddings += reused
        segment.add(documents, passage_vectors, sentence_vectors)

    def _finish(self, segment: SegmentWriter) -> SegmentEntry:
        self.progress.start("Writing index", 3)
        written = segment.finish(self.ann_for, _checkpoint, self.progress.advance)
        return SegmentEntry(
            name=written.name,
            documents=written.documents,
            passages=written.passages,
            sentences=written.sentences,
            ann=written.ann.to_dict() if written.ann else None,
        )

    def with_deletions(
        self, segments: Sequence[SegmentEntry], deleted: dict[str, str]
    ) -> list[SegmentEntry]:
        """The segments with these documents (doc id -> segment name) marked deleted; a
        segment left with no live document is dropped."""
        by_segment: dict[str, list[str]] = {}
        for doc_id, name in deleted.items():
            by_segment.setdefault(name, []).append(doc_id)
        kept = []
        for entry in segments:
            gone = sorted(by_segment.get(entry.name, ()))
            if gone:
                with MetadataStore.open(self._folder(entry)) as store:
                    ranges, sentences = store.document_rows(gone)
                entry = replace(
                    entry,
                    deleted=tuple(sorted({*entry.deleted, *gone})),
                    deleted_passages=entry.deleted_passages + RowRanges(ranges).count,
                    deleted_sentences=entry.deleted_sentences + sentences,
                )
            if entry.live_documents > 0:
                kept.append(entry)
        return kept

    def merge_while_needed(self, segments: list[SegmentEntry]) -> list[SegmentEntry]:
        """Merge segments, publishing each merge, until the merge policy wants no more."""
        while group := self.plan_merge(segments):
            merged = self.merge(group)
            self.report.merged += len(group)
            names = {entry.name for entry in group}
            at = next(i for i, entry in enumerate(segments) if entry.name in names)
            segments = [entry for entry in segments if entry.name not in names]
            segments.insert(at, merged)
            _checkpoint("merge")
            self.publish(segments)
        return segments

    def merge(self, group: Sequence[SegmentEntry]) -> SegmentEntry:
        """One new segment holding the live documents of these segments, with their vectors
        (nothing is read from the files or embedded again), copied a batch at a time."""
        self.progress.start("Merging segments", sum(e.live_documents for e in group))
        segment = SegmentWriter(self.index_dir, self.embedder.dimension)
        try:
            for entry in group:
                self._copy_live(entry, segment)
        except BaseException:
            segment.abandon()
            raise
        return self._finish(segment)

    def _copy_live(self, entry: SegmentEntry, segment: SegmentWriter) -> None:
        """Add the live documents of a segment, with their vectors, to `segment`."""
        folder = self._folder(entry)
        offsets = read_sentence_offsets(folder)
        passage_vectors = FaissVectorIndex.open(folder / PASSAGE_VECTORS)
        sentence_vectors = FaissVectorIndex.open(folder / SENTENCE_VECTORS)
        with MetadataStore.open(folder, entry.deleted) as store:
            live = store.live_documents()
            for first in range(0, len(live), MERGE_BATCH):
                chosen = live[first : first + MERGE_BATCH]
                chunked = store.chunked_documents([doc_id for doc_id, *_ in chosen])
                documents = [
                    (loaded, record)
                    for loaded, (_, record, _, _) in zip(chunked, chosen, strict=True)
                ]
                passage_rows = np.concatenate([np.arange(a, b) for _, _, a, b in chosen])
                sentence_rows = np.concatenate(
                    [np.arange(offsets[a], offsets[b]) for _, _, a, b in chosen]
                )
                segment.add(
                    documents,
                    passage_vectors.vectors(passage_rows),
                    sentence_vectors.vectors(sentence_rows),
                )
                self.progress.advance(len(chosen))

    def publish(self, segments: Sequence[SegmentEntry]) -> None:
        """Make a generation of these segments live."""
        publish_generation(
            self.index_dir,
            Manifest(
                format_version=FORMAT_VERSION,
                model=self.settings.model,
                backend=self.settings.backend,
                dimension=self.embedder.dimension,
                chunking=self.options.to_dict(),
                documents=sum(entry.live_documents for entry in segments),
                passages=sum(entry.live_passages for entry in segments),
                sentences=sum(entry.live_sentences for entry in segments),
                built_at=now_iso(),
                sentence_vectors=self.sentence_mode,
                passage_vectors=self.passage_mode,
                segments=tuple(segments),
                device=self.embedder.device,
            ),
        )

    def _folder(self, entry: SegmentEntry) -> Path:
        return segment_path(self.index_dir, entry.name)
