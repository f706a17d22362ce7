"""An indexing run: discover files, load and chunk what changed, embed, write a generation."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from indexer.chunking import ChunkedDocument, ChunkingOptions, chunk_document
from indexer.embedding import Embedder, embed_cached, load_embedder
from indexer.embedding_cache import EmbeddingCache, cache_file
from indexer.errors import REBUILD_HINT, IndexCorrupt, ParaciteError, UnsupportedFile
from indexer.lexical import LexicalIndex
from indexer.loaders import document_id, find_files
from indexer.loaders.isolated import IsolatedReader
from indexer.models import FileReport, IndexReport, Passage
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
    check_generation,
    current_generation,
    new_generation,
    now_iso,
    prune_generations,
    publish_generation,
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
    """Index every supported file under `root` into `settings.index`, reusing unchanged work."""
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
        previous = None if rebuild else current_generation(index_dir)
        old_manifest = Manifest.read(previous) if previous else None
        if previous and old_manifest:
            old_manifest.check_compatible(settings.model, settings.backend)
            try:
                check_generation(previous, old_manifest)
            except IndexCorrupt as error:
                report.repaired = str(error).removesuffix(f"; {REBUILD_HINT}")
                previous, old_manifest = None, None
        embedder = embedder or load_embedder(settings.model, settings.backend)
        options = ChunkingOptions(
            max_tokens=embedder.window_tokens, overlap=settings.window_overlap
        )
        same_chunking = old_manifest is not None and old_manifest.chunking == options.to_dict()
        # In context only where the model pools by mean; the manifest records what was done.
        sentence_mode: SentenceVectors = embedder.sentence_mode(settings.sentence_vectors)
        same_vectors = old_manifest is not None and old_manifest.sentence_vectors == sentence_mode
        same_ann = old_manifest is not None and old_manifest.ann == _ann_dict(
            _ann_for(old_manifest.passages, settings)
        )
        old_records = _read_file_records(previous) if previous and same_chunking else {}

        chunked, unchanged = _scan(
            root, index_dir, settings, options, embedder, old_records, report, progress
        )
        _checkpoint("scan")
        kept = set(chunked) | set(unchanged)
        for doc_id in sorted(set(old_records) - kept):
            if not any(f.path == doc_id for f in report.files):
                report.files.append(FileReport(doc_id, "removed"))
        if (
            previous
            and same_chunking
            and same_vectors
            and same_ann
            and not chunked
            and set(unchanged) == set(old_records)
        ):
            report.up_to_date = True
            report.seconds = time.perf_counter() - started
            return report

        staged = new_generation(index_dir)
        try:
            documents = _merge(previous, unchanged, chunked)
            _write_generation(
                staged,
                documents,
                options,
                embedder,
                settings,
                index_dir,
                report,
                progress,
                sentence_mode=sentence_mode,
            )
            _checkpoint("publish")
            publish_generation(index_dir, staged)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        prune_generations(index_dir)
        report.seconds = time.perf_counter() - started
        return report


@dataclass(slots=True)
class _Loaded:
    chunked: ChunkedDocument
    record: FileRecord


def _scan(
    root: Path,
    index_dir: Path,
    settings: Settings,
    options: ChunkingOptions,
    embedder: Embedder,
    old_records: dict[str, FileRecord],
    report: IndexReport,
    progress: Progress,
) -> tuple[dict[str, _Loaded], dict[str, FileRecord]]:
    """Load and chunk new or changed files; return them and the records of unchanged ones.

    Each file is read in a worker process (`IsolatedReader`) under time and memory limits,
    and whatever goes wrong with one file is reported as its skip reason.
    """
    discovery = find_files(
        root, exclude=[index_dir], follow_external_links=settings.follow_external_links
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
                result = chunk_document(document, options, embedder.count_tokens)
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


def _read_file_records(generation: Path) -> dict[str, FileRecord]:
    try:
        with MetadataStore.open(generation) as store:
            return store.file_records()
    except IndexCorrupt:
        return {}


def _ann_for(passages: int, settings: Settings) -> AnnConfig | None:
    """The ANN structure an index of this many passages gets, if any."""
    return ann_config_for(passages) if passages >= settings.ann_min_passages else None


def _ann_dict(config: AnnConfig | None) -> dict[str, Any] | None:
    return config.to_dict() if config else None


def _merge(
    previous: Path | None,
    unchanged: dict[str, FileRecord],
    chunked: dict[str, _Loaded],
) -> list[_Loaded]:
    """Every document of the new generation, in doc id order: reloaded ones and fresh ones."""
    documents = dict(chunked)
    if previous and unchanged:
        with MetadataStore.open(previous) as store:
            for loaded in store.chunked_documents(sorted(unchanged)):
                doc_id = loaded.document.doc_id
                documents[doc_id] = _Loaded(loaded, unchanged[doc_id])
    return [documents[doc_id] for doc_id in sorted(documents)]


def _write_generation(
    staged: Path,
    documents: Sequence[_Loaded],
    options: ChunkingOptions,
    embedder: Embedder,
    settings: Settings,
    index_dir: Path,
    report: IndexReport,
    progress: Progress,
    *,
    sentence_mode: SentenceVectors,
) -> None:
    passages = [p for loaded in documents for p in loaded.chunked.passages]
    sentences = [s for p in passages for s in p.sentences]
    cache = EmbeddingCache(
        cache_file(index_dir, settings.model, settings.backend),
        embedder.dimension,
    )
    try:
        progress.start("Embedding", len(passages) + len(sentences))
        texts = [passage_embedding_text(p) for p in passages]
        passage_vectors, sentence_vectors, report.embedded = embed_cached(
            embedder,
            cache,
            texts,
            [_sentence_spans(p, text) for p, text in zip(passages, texts, strict=True)],
            settings.batch_size,
            progress.advance,
            in_context=sentence_mode == "in-context",
        )
        _checkpoint("embed")
    finally:
        cache.close()
    report.reused_embeddings = len(passages) + len(sentences) - report.embedded

    progress.start("Writing index", 3)
    with MetadataStore.create(staged) as store:
        store.write_documents((loaded.chunked, loaded.record) for loaded in documents)
    write_sentence_offsets(staged, [len(p.sentences) for p in passages])
    progress.advance()
    _checkpoint("write")
    ann = _ann_for(len(passages), settings)
    _save_vectors(staged / PASSAGE_VECTORS, passage_vectors, embedder.dimension, ann=ann)
    _save_vectors(
        staged / SENTENCE_VECTORS, sentence_vectors, embedder.dimension, dtype=SENTENCE_DTYPE
    )
    progress.advance()
    LexicalIndex.write(staged / LEXICAL, [lexical_terms(lexical_text(p)) for p in passages])
    LexicalIndex.write(staged / SENTENCE_LEXICAL, [lexical_terms(s.text) for s in sentences])
    progress.advance()
    Manifest(
        format_version=FORMAT_VERSION,
        model=settings.model,
        backend=settings.backend,
        dimension=embedder.dimension,
        chunking=options.to_dict(),
        documents=len(documents),
        passages=len(passages),
        sentences=len(sentences),
        built_at=now_iso(),
        sentence_vectors=sentence_mode,
        ann=_ann_dict(ann),
    ).write(staged)


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
