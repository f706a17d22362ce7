"""An indexing run: discover files, load and chunk what changed, embed, write a segment."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from indexer.chunking import ChunkedDocument, ChunkingOptions, chunk_document
from indexer.embedding import Embedder, embed_cached, load_embedder
from indexer.embedding_cache import EmbeddingCache, cache_file
from indexer.errors import REBUILD_HINT, IndexCorrupt, ParaciteError, UnsupportedFile
from indexer.lexical import LexicalIndex
from indexer.loaders import document_id, find_files
from indexer.loaders.isolated import IsolatedReader
from indexer.models import FileReport, IndexReport, Passage
from indexer.ranking import RowRanges
from indexer.segments import plan_merge
from indexer.settings import SentenceVectors, Settings
from indexer.store import (
    FORMAT_VERSION,
    LEXICAL,
    PASSAGE_VECTORS,
    SENTENCE_LEXICAL,
    SENTENCE_VECTORS,
    FileRecord,
    Manifest,
    MetadataStore,
    SegmentEntry,
    check_generation,
    current_generation,
    finish_segment,
    new_segment,
    now_iso,
    prune_generations,
    publish_generation,
    read_sentence_offsets,
    segment_path,
    write_sentence_offsets,
    writer_lock,
)
from indexer.text import content_hash, lexical_terms
from indexer.vectors import SENTENCE_DTYPE, AnnConfig, FaissVectorIndex, ann_config_for


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


def lexical_text(passage: Passage) -> str:
    return " ".join(part for part in (passage.title, passage.section, passage.text) if part)


def _checkpoint(stage: str) -> None:
    """Stop here for good when the crash tests ask to: a test-only hook, not a user setting.

    With PARACITE_TEST_HOLD_AT set to this stage ("scan", "embed", "write" or "publish"), the
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

    New and changed files go into one new segment; the documents they replace, and those of
    removed files, are marked deleted in their old segments. The new generation is published
    first, then segments are merged if there are too many (and published again).
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
        writer = IndexWriter(index_dir, settings, embedder, report, progress)
        segments = list(previous.segments) if previous and writer.can_extend(previous) else []
        stored = writer.stored_files(segments)
        chunked, unchanged = writer.scan(root, {doc: record for doc, (record, _) in stored.items()})
        _checkpoint("scan")
        removed = sorted(set(stored) - set(chunked) - set(unchanged))
        for doc_id in removed:
            if not any(f.path == doc_id for f in report.files):
                report.files.append(FileReport(doc_id, "removed"))
        replaced = {doc: stored[doc][1] for doc in [*removed, *(d for d in chunked if d in stored)]}
        segments = writer.with_deletions(segments, replaced)
        if chunked:
            segments.append(writer.write_segment([chunked[doc] for doc in sorted(chunked)]))
        changed = (
            previous is None or bool(chunked or replaced) or len(segments) != len(previous.segments)
        )
        if not changed and not writer.plan_merge(segments):
            report.up_to_date = True
            report.seconds = time.perf_counter() - started
            return report
        if changed:
            _checkpoint("publish")
            writer.publish(segments)
        segments = writer.merge_while_needed(segments)
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


@dataclass(slots=True)
class _Loaded:
    chunked: ChunkedDocument
    record: FileRecord


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

    def can_extend(self, previous: Manifest) -> bool:
        """Whether new segments can join the previous generation's (same chunking and
        sentence vectors); otherwise every file is read and embedded into one new segment."""
        return (
            previous.chunking == self.options.to_dict()
            and previous.sentence_vectors == self.sentence_mode
        )

    def wants_ann(self, passages: int) -> bool:
        """Whether a segment of this many passages gets an ANN structure."""
        return passages >= self.settings.ann_min_passages

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

    def scan(
        self, root: Path, old_records: dict[str, FileRecord]
    ) -> tuple[dict[str, _Loaded], dict[str, FileRecord]]:
        """Load and chunk new or changed files; return them and the records of unchanged ones.

        Each file is read in a worker process (`IsolatedReader`) under time and memory
        limits, and whatever goes wrong with one file is reported as its skip reason.
        """
        settings, report, progress = self.settings, self.report, self.progress
        discovery = find_files(
            root, exclude=[self.index_dir], follow_external_links=settings.follow_external_links
        )
        for skipped in discovery.skipped:
            report.files.append(FileReport(skipped.path_id, "skipped", skipped.reason))
        max_bytes = int(settings.max_file_mb * 1024 * 1024)
        chunked: dict[str, _Loaded] = {}
        unchanged: dict[str, FileRecord] = {}
        progress.start("Reading files", len(discovery.files))
        with IsolatedReader(root, max_bytes, settings.max_file_seconds) as reader:
            for path in discovery.files:
                doc_id = document_id(path, root)
                progress.advance()
                try:
                    stat = path.stat()
                    old = old_records.get(doc_id)
                    if old and (old.size, old.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                        unchanged[doc_id] = old
                        continue
                    digest = content_hash(path.read_bytes()) if stat.st_size <= max_bytes else ""
                    record = FileRecord(digest, stat.st_size, stat.st_mtime_ns)
                    if old and old.content_hash == digest:
                        unchanged[doc_id] = record
                        continue
                    document = reader.load(path)
                    result = chunk_document(document, self.options, self.embedder.count_tokens)
                except FileNotFoundError:
                    reason = "file disappeared during indexing"
                    report.files.append(FileReport(doc_id, "skipped", reason))
                    continue
                except UnsupportedFile as error:
                    report.files.append(FileReport(doc_id, "skipped", str(error)))
                    continue
                except Exception as error:  # noqa: BLE001 - one bad file must not stop the run
                    reason = f"could not be read ({type(error).__name__}: {error})"
                    report.files.append(FileReport(doc_id, "skipped", reason))
                    continue
                if not result.passages:
                    report.files.append(FileReport(doc_id, "skipped", "no text found"))
                    continue
                chunked[doc_id] = _Loaded(result, record)
                report.files.append(
                    FileReport(
                        doc_id,
                        "updated" if doc_id in old_records else "added",
                        "; ".join(document.warnings),
                        len(result.passages),
                    )
                )
        for doc_id in unchanged:
            report.files.append(FileReport(doc_id, "unchanged"))
        return chunked, unchanged

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

    def write_segment(self, documents: Sequence[_Loaded]) -> SegmentEntry:
        """A new segment of these documents, embedded (through the embedding cache)."""
        passages = [p for loaded in documents for p in loaded.chunked.passages]
        sentences = [s for p in passages for s in p.sentences]
        cache = EmbeddingCache(
            cache_file(self.index_dir, self.settings.model, self.settings.backend),
            self.embedder.dimension,
        )
        try:
            self.progress.start("Embedding", len(passages) + len(sentences))
            texts = [passage_embedding_text(p) for p in passages]
            passage_vectors, sentence_vectors, embedded = embed_cached(
                self.embedder,
                cache,
                texts,
                [_sentence_spans(p, text) for p, text in zip(passages, texts, strict=True)],
                self.settings.batch_size,
                self.progress.advance,
                in_context=self.sentence_mode == "in-context",
            )
            _checkpoint("embed")
        finally:
            cache.close()
        self.report.embedded += embedded
        self.report.reused_embeddings += len(passages) + len(sentences) - embedded
        return self._write(documents, passage_vectors, sentence_vectors)

    def merge_while_needed(self, segments: list[SegmentEntry]) -> list[SegmentEntry]:
        """Merge segments, publishing each merge, until the merge policy wants no more."""
        while group := self.plan_merge(segments):
            merged = self.merge(group)
            names = {entry.name for entry in group}
            at = next(i for i, entry in enumerate(segments) if entry.name in names)
            segments = [entry for entry in segments if entry.name not in names]
            segments.insert(at, merged)
            _checkpoint("merge")
            self.publish(segments)
        return segments

    def merge(self, group: Sequence[SegmentEntry]) -> SegmentEntry:
        """One new segment holding the live documents of these segments, with their vectors
        (nothing is read from the files or embedded again)."""
        documents: list[_Loaded] = []
        passage_parts: list[np.ndarray] = []
        sentence_parts: list[np.ndarray] = []
        self.progress.start("Merging segments", sum(e.live_documents for e in group))
        for entry in group:
            folder = self._folder(entry)
            with MetadataStore.open(folder, entry.deleted) as store:
                live = store.live_documents()
                chunked = list(store.chunked_documents([doc_id for doc_id, *_ in live]))
            offsets = read_sentence_offsets(folder)
            passage_vectors = FaissVectorIndex.open(folder / PASSAGE_VECTORS)
            sentence_vectors = FaissVectorIndex.open(folder / SENTENCE_VECTORS)
            for (_, record, start, end), loaded in zip(live, chunked, strict=True):
                documents.append(_Loaded(loaded, record))
                passage_parts.append(passage_vectors.vectors(np.arange(start, end)))
                sentence_parts.append(
                    sentence_vectors.vectors(np.arange(offsets[start], offsets[end]))
                )
                self.progress.advance()
        dimension = self.embedder.dimension
        return self._write(
            documents,
            np.concatenate(passage_parts) if passage_parts else np.zeros((0, dimension)),
            np.concatenate(sentence_parts) if sentence_parts else np.zeros((0, dimension)),
        )

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
                segments=tuple(segments),
            ),
        )

    def _write(
        self,
        documents: Sequence[_Loaded],
        passage_vectors: np.ndarray,
        sentence_vectors: np.ndarray,
    ) -> SegmentEntry:
        """Write a segment of documents whose vectors are known; return its entry."""
        passages = [p for loaded in documents for p in loaded.chunked.passages]
        sentences = [s for p in passages for s in p.sentences]
        dimension = self.embedder.dimension
        ann = ann_config_for(len(passages)) if self.wants_ann(len(passages)) else None
        staged = new_segment(self.index_dir)
        try:
            self.progress.start("Writing index", 3)
            with MetadataStore.create(staged) as store:
                store.write_documents((loaded.chunked, loaded.record) for loaded in documents)
            write_sentence_offsets(staged, [len(p.sentences) for p in passages])
            self.progress.advance()
            _checkpoint("write")
            _save_vectors(staged / PASSAGE_VECTORS, passage_vectors, dimension, ann=ann)
            _save_vectors(
                staged / SENTENCE_VECTORS, sentence_vectors, dimension, dtype=SENTENCE_DTYPE
            )
            self.progress.advance()
            LexicalIndex.write(staged / LEXICAL, (lexical_terms(lexical_text(p)) for p in passages))
            LexicalIndex.write(
                staged / SENTENCE_LEXICAL, (lexical_terms(s.text) for s in sentences)
            )
            self.progress.advance()
            name = finish_segment(staged)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return SegmentEntry(
            name=name,
            documents=len(documents),
            passages=len(passages),
            sentences=len(sentences),
            ann=ann.to_dict() if ann else None,
        )

    def _folder(self, entry: SegmentEntry) -> Path:
        return segment_path(self.index_dir, entry.name)


def _save_vectors(
    path: Path,
    vectors: np.ndarray,
    dimension: int,
    *,
    dtype: type[np.floating] = np.float32,
    ann: AnnConfig | None = None,
) -> None:
    index = FaissVectorIndex.empty(dimension)
    index.add(vectors)
    index.save(path, dtype=dtype, ann_config=ann)
