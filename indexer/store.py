"""The index folder: immutable segments, listed by generations that are switched atomically.

Layout of an index folder::

    CURRENT                 name of the live generation, replaced atomically
    lock                    held (flock) by the one indexing run allowed at a time
    cache/                  embedding cache per model and backend
    gen-<stamp>/            one generation: the segments that make up the index at one time
        manifest.json       format version, model, dimension, chunking, live counts, and each
                            segment with its counts, ANN structure and deleted documents
    segments/seg-<stamp>/   one segment: documents written by one indexing run or merge,
                            never modified afterwards (rows numbered from 0 in each segment)
        meta.sqlite         documents, blocks, passages, sentences
        passages.npy        one float32 vector per passage (row = passage id), memory-mapped
        passages.ann.faiss  FAISS ANN structure over the passage vectors (large indexes only)
        sentences.npy       one float32 vector per sentence (row = sentence id), memory-mapped
        passage-sentences.npy  int64: where each passage's sentences start, then the total
        lexical/            BM25 postings over title + section + passage text
        lexical-sentences/  BM25 postings over each sentence

An indexing run that changes a few files writes one new segment for them and a generation
that lists it beside the old segments, with the replaced documents marked deleted in theirs.

The SQL of paracite lives here alone, behind `MetadataStore`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from indexer.chunking import ChunkedDocument
from indexer.errors import REBUILD_HINT, IndexBusy, IndexCorrupt, IndexNotFound, ModelMismatch
from indexer.lexical import check_lexical
from indexer.models import (
    Document,
    DocumentBlock,
    DocumentInfo,
    DocumentView,
    IndexStats,
    Passage,
    Sentence,
)
from indexer.vectors import SENTENCE_DTYPE, ann_path_of, check_vector_file

# 2: vectors as memory-mapped .npy files, an optional ANN structure, sentence offsets.
# 3: segments with deletions; BM25 postings with term frequencies, scored at search time.
FORMAT_VERSION = 3
MANIFEST = "manifest.json"
SEGMENTS = "segments"
META = "meta.sqlite"
PASSAGE_VECTORS = "passages.npy"  # with passages.ann.faiss beside it on large indexes
SENTENCE_VECTORS = "sentences.npy"
SENTENCE_OFFSETS = "passage-sentences.npy"
LEXICAL = "lexical"
SENTENCE_LEXICAL = "lexical-sentences"
CURRENT = "CURRENT"

SCHEMA = """
CREATE TABLE documents (
    doc_id TEXT PRIMARY KEY, title TEXT NOT NULL, format TEXT NOT NULL,
    metadata TEXT NOT NULL, warnings TEXT NOT NULL, source TEXT NOT NULL,
    content_hash TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    paragraphs INTEGER NOT NULL
);
CREATE TABLE blocks (
    doc_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, number INTEGER,
    section TEXT, page INTEGER, text TEXT NOT NULL, char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL, PRIMARY KEY (doc_id, seq)
);
CREATE TABLE passages (
    id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, paragraph INTEGER NOT NULL,
    window INTEGER NOT NULL, section TEXT, page INTEGER, text TEXT NOT NULL,
    char_start INTEGER NOT NULL, char_end INTEGER NOT NULL,
    first_sentence INTEGER NOT NULL, sentence_count INTEGER NOT NULL
);
CREATE TABLE sentences (
    id INTEGER PRIMARY KEY, passage_id INTEGER NOT NULL, text TEXT NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL,
    char_start INTEGER NOT NULL, char_end INTEGER NOT NULL
);
CREATE INDEX passages_by_doc ON passages (doc_id, paragraph);
-- What an indexing run reads to tell changed files, without reading past each row's source
-- text (2 s of a run that adds one file to 100,000 others).
CREATE INDEX documents_files ON documents (doc_id, content_hash, size, mtime_ns);
"""


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    """A segment as a generation lists it: what its files hold and which documents of it
    were deleted (replaced or removed) since it was written."""

    name: str
    documents: int
    passages: int
    sentences: int
    # The ANN structure over its passage vectors (AnnConfig.to_dict), None when there is none.
    ann: dict[str, Any] | None = None
    deleted: tuple[str, ...] = ()
    deleted_passages: int = 0
    deleted_sentences: int = 0

    @property
    def live_documents(self) -> int:
        return self.documents - len(self.deleted)

    @property
    def live_passages(self) -> int:
        return self.passages - self.deleted_passages

    @property
    def live_sentences(self) -> int:
        return self.sentences - self.deleted_sentences

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "deleted": list(self.deleted)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentEntry:
        return cls(**{**data, "deleted": tuple(data.get("deleted", ()))})


@dataclass(frozen=True, slots=True)
class Manifest:
    """What an index generation says about itself (counts are of live documents)."""

    format_version: int
    model: str
    backend: str
    dimension: int
    chunking: dict[str, Any]
    documents: int
    passages: int
    sentences: int
    built_at: str
    # How sentence vectors were made (see indexer.embedding); older indexes made them alone.
    sentence_vectors: str = "standalone"
    # How passage vectors were made: run through the model, or pooled from their sentences'.
    passage_vectors: str = "standalone"
    segments: tuple[SegmentEntry, ...] = ()
    # Where the model of the indexing run that wrote this generation ran ("cpu", "cuda:0").
    device: str = "cpu"

    @classmethod
    def read(cls, generation: Path) -> Manifest:
        """The generation's manifest; ModelMismatch when it is of another format version."""
        try:
            data = json.loads((generation / MANIFEST).read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            _check_format_version(data.get("format_version"))
            segments = tuple(SegmentEntry.from_dict(entry) for entry in data.pop("segments", ()))
            return cls(**data, segments=segments)
        except (OSError, ValueError, TypeError, AttributeError) as error:
            message = f"index manifest in {generation} is unreadable: {error}; {REBUILD_HINT}"
            raise IndexCorrupt(message) from error

    def write(self, generation: Path) -> None:
        data = {**asdict(self), "segments": [entry.to_dict() for entry in self.segments]}
        (generation / MANIFEST).write_text(json.dumps(data, indent=2), encoding="utf-8")

    @property
    def rows(self) -> int:
        """Passage rows over all segments, deleted ones included."""
        return sum(entry.passages for entry in self.segments)

    def stats(self, index_dir: Path) -> IndexStats:
        return IndexStats(
            path=str(index_dir.resolve()),
            model=self.model,
            backend=self.backend,
            dimension=self.dimension,
            documents=self.documents,
            passages=self.passages,
            sentences=self.sentences,
            built_at=self.built_at,
            format_version=self.format_version,
            chunking=self.chunking,
            sentence_vectors=self.sentence_vectors,
            passage_vectors=self.passage_vectors,
            device=self.device,
        )

    def check_compatible(self, model: str | None = None, backend: str | None = None) -> None:
        _check_format_version(self.format_version)
        if model is not None and (model, backend) != (self.model, self.backend):
            raise ModelMismatch(
                f"index was built with model {self.model!r} ({self.backend}), not {model!r} "
                f"({backend}); re-index with `paracite index --rebuild` to switch models"
            )


def _check_format_version(version: object) -> None:
    if version != FORMAT_VERSION:
        raise ModelMismatch(
            f"index format version {version} is not supported "
            f"(this paracite reads version {FORMAT_VERSION}); rebuild it with "
            "`paracite index --rebuild`"
        )


def read_stats(index_dir: Path) -> IndexStats:
    """What the live generation holds, read from its manifest alone (no model is loaded)."""
    manifest = Manifest.read(require_generation(index_dir))
    manifest.check_compatible()
    return manifest.stats(index_dir)


def check_index(index_dir: Path) -> IndexStats:
    """Like `read_stats`, but first checks that the files the manifest implies exist and open."""
    generation = require_generation(index_dir)
    manifest = Manifest.read(generation)
    manifest.check_compatible()
    check_generation(generation, manifest)
    return manifest.stats(index_dir)


def segment_path(index_dir: Path, name: str) -> Path:
    """The folder of a segment, by the name a manifest gives it."""
    if not re.fullmatch(r"seg-[\w.-]+", name):
        raise IndexCorrupt(
            f"index at {index_dir} lists a malformed segment {name!r}; {REBUILD_HINT}"
        )
    return index_dir / SEGMENTS / name


def segment_paths(generation: Path, manifest: Manifest) -> list[Path]:
    """The folders of a generation's segments, in row order."""
    return [segment_path(generation.parent, entry.name) for entry in manifest.segments]


def live_segments(index_dir: Path) -> list[Path]:
    """The folders of the live generation's segments, in row order."""
    generation = require_generation(index_dir)
    return segment_paths(generation, Manifest.read(generation))


def check_generation(generation: Path, manifest: Manifest) -> None:
    """IndexCorrupt unless the generation's segments are all there and agree with its manifest.

    Cheap: a few stat calls, file headers and two small queries per segment; it does not read
    the vectors.
    """
    live = (
        sum(e.live_documents for e in manifest.segments),
        sum(e.live_passages for e in manifest.segments),
        sum(e.live_sentences for e in manifest.segments),
    )
    if live != (manifest.documents, manifest.passages, manifest.sentences):
        raise IndexCorrupt(
            f"index manifest in {generation} is inconsistent: its segments hold {live[0]} "
            f"documents, {live[1]} passages and {live[2]} sentences, its totals say "
            f"{manifest.documents}, {manifest.passages} and {manifest.sentences}; {REBUILD_HINT}"
        )
    for entry, folder in zip(manifest.segments, segment_paths(generation, manifest), strict=True):
        check_segment(folder, entry, manifest.dimension)


def check_segment(folder: Path, entry: SegmentEntry, dimension: int) -> None:
    """IndexCorrupt unless a segment's files are all there and agree with its entry."""
    if not folder.is_dir():
        raise IndexCorrupt(f"index segment {folder} is missing; {REBUILD_HINT}")
    with MetadataStore.open(folder) as store:
        documents, passages = store.counts()
    if (documents, passages) != (entry.documents, entry.passages):
        raise IndexCorrupt(
            f"index segment {folder} is inconsistent: {META} holds {documents} documents and "
            f"{passages} passages, the manifest {entry.documents} and {entry.passages}; "
            f"{REBUILD_HINT}"
        )
    passages, sentences = entry.passages, entry.sentences
    check_vector_file(folder / PASSAGE_VECTORS, (passages, dimension), np.float32)
    check_vector_file(folder / SENTENCE_VECTORS, (sentences, dimension), SENTENCE_DTYPE)
    check_vector_file(folder / SENTENCE_OFFSETS, (passages + 1,), np.int64)
    ann = ann_path_of(folder / PASSAGE_VECTORS)
    if entry.ann is not None and not ann.is_file():
        raise IndexCorrupt(f"ANN index {ann} is missing; {REBUILD_HINT}")
    check_lexical(folder / LEXICAL, passages)
    check_lexical(folder / SENTENCE_LEXICAL, sentences)


def file_stamps(generation: Path, manifest: Manifest) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file of a generation and its segments (they never
    change once live)."""
    stamps = {}
    with reading(generation):
        for folder in [generation, *segment_paths(generation, manifest)]:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    stat = path.stat()
                    name = path.relative_to(generation.parent).as_posix()
                    stamps[name] = (stat.st_size, stat.st_mtime_ns)
    return stamps


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def current_generation(index_dir: Path) -> Path | None:
    """The live generation folder, or None when the folder holds no index yet."""
    pointer = index_dir / CURRENT
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise IndexCorrupt(f"cannot read {pointer}: {error}; {REBUILD_HINT}") from error
    generation = index_dir / name
    if not re.fullmatch(r"gen-[\w.-]+", name) or not generation.is_dir():
        raise IndexCorrupt(
            f"index at {index_dir} points to a missing generation {name!r}; {REBUILD_HINT}"
        )
    return generation


def require_generation(index_dir: Path) -> Path:
    generation = current_generation(index_dir)
    if generation is None:
        raise IndexNotFound(
            f"no index at {index_dir}; build one with `paracite index <folder>` "
            "(or point --index / PARACITE_INDEX at an existing one)"
        )
    return generation


def _unique_stamp() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}"


def new_generation(index_dir: Path) -> Path:
    """A fresh, empty, not-yet-live generation folder."""
    generation = index_dir / f"gen-{_unique_stamp()}.tmp"
    generation.mkdir(parents=True)
    return generation


def new_segment(index_dir: Path) -> Path:
    """A fresh, empty segment folder, to be written and then finished by `finish_segment`."""
    segment = index_dir / SEGMENTS / f"seg-{_unique_stamp()}.tmp"
    segment.mkdir(parents=True)
    return segment


def finish_segment(staged: Path) -> str:
    """Make a written segment durable under its final name (no generation lists it yet)."""
    final = staged.with_name(staged.name.removesuffix(".tmp"))
    _fsync_tree(staged)
    staged.rename(final)
    _fsync_dir(staged.parent)
    return final.name


def publish_generation(index_dir: Path, manifest: Manifest) -> Path:
    """Write a generation of finished segments and make it live with one atomic rename of
    CURRENT."""
    staged = new_generation(index_dir)
    try:
        manifest.write(staged)
        _fsync_tree(staged)
        final = staged.with_name(staged.name.removesuffix(".tmp"))
        staged.rename(final)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    pointer_tmp = index_dir / f"{CURRENT}.tmp"
    with open(pointer_tmp, "w", encoding="utf-8") as handle:
        handle.write(final.name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(pointer_tmp, index_dir / CURRENT)
    _fsync_dir(index_dir)
    return final


def prune_generations(index_dir: Path, keep: int = 3) -> None:
    """Remove abandoned staging folders, all but the newest `keep` generations, and the
    segments no kept generation lists.

    Earlier generations are kept so a server that opened one keeps working while it moves
    to the live one (an indexing run may publish twice: its changes, then a merge). A broken
    CURRENT counts as no live generation, so that `--rebuild` can repair it.
    """
    try:
        live = current_generation(index_dir)
    except IndexCorrupt:
        live = None
    for leftover in [*index_dir.glob("gen-*.tmp"), *(index_dir / SEGMENTS).glob("seg-*.tmp")]:
        shutil.rmtree(leftover, ignore_errors=True)
    finished = sorted(
        (path for path in index_dir.glob("gen-*") if path.is_dir() and path != live),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for old in finished[max(keep - 1, 0) :]:
        shutil.rmtree(old, ignore_errors=True)
    listed: set[str] = set()
    for generation in index_dir.glob("gen-*"):
        try:
            listed.update(entry.name for entry in Manifest.read(generation).segments)
        except (IndexCorrupt, ModelMismatch):
            continue
    for segment in (index_dir / SEGMENTS).glob("seg-*"):
        if segment.name not in listed:
            shutil.rmtree(segment, ignore_errors=True)


@contextlib.contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """Hold the index's writer lock; a second indexing run is refused with a clear message."""
    index_dir.mkdir(parents=True, exist_ok=True)
    handle = open(index_dir / "lock", "a+", encoding="utf-8")  # noqa: SIM115
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise IndexBusy(
                f"another indexing run ({holder}) is updating {index_dir}; "
                "wait for it to finish and try again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


@dataclass(frozen=True, slots=True)
class FileRecord:
    """What an indexing run remembers of a file to tell whether it changed."""

    content_hash: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class DocumentLayout:
    """Where documents sit among passage rows (documents are contiguous, in row order)."""

    first_passage: np.ndarray  # per document, by position: its first passage row
    author_passage: dict[int, int]  # document position -> row of its author-note passage

    def document_of(self, passage_row: int) -> int:
        """The position of the document holding a passage row."""
        return int(np.searchsorted(self.first_passage, passage_row, side="right")) - 1


# Leaves out the documents deleted from a segment (`?` is their ids as a JSON array).
NOT_DELETED = "doc_id NOT IN (SELECT value FROM json_each(?))"


class MetadataStore:
    """A segment's SQLite metadata: documents, blocks, passages and sentences.

    Documents `deleted` from the segment (by a later indexing run) are left out of what it
    lists and finds by document; rows are still read by number. Opened read-only it is safe
    to share between threads (reads are serialised).
    """

    def __init__(
        self, db: sqlite3.Connection, generation: Path, deleted: Iterable[str] = ()
    ) -> None:
        self._db = db
        self._generation = generation
        self._lock = threading.Lock()
        self._deleted = json.dumps(sorted(deleted))
        self._next_passage = 0
        self._next_sentence = 0

    @classmethod
    def open(cls, generation: Path, deleted: Iterable[str] = ()) -> MetadataStore:
        """The segment's metadata, read-only."""
        path = generation / META
        if not path.is_file():
            raise IndexCorrupt(f"index at {generation} has no {META}; {REBUILD_HINT}")
        with reading(generation):
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        return cls(db, generation, deleted)

    @classmethod
    def create(cls, generation: Path) -> MetadataStore:
        """Empty metadata in a staged generation, to be written."""
        db = sqlite3.connect(generation / META)
        db.executescript(SCHEMA)
        return cls(db, generation)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------

    def file_records(self) -> dict[str, FileRecord]:
        """The content hash, size and mtime of every stored document, by doc id."""
        with self._reading():
            rows = self._db.execute(
                f"SELECT doc_id, content_hash, size, mtime_ns FROM documents WHERE {NOT_DELETED}",
                (self._deleted,),
            ).fetchall()
        return {doc_id: FileRecord(h, size, mtime) for doc_id, h, size, mtime in rows}

    def counts(self) -> tuple[int, int]:
        """How many documents, and how many passage rows (the highest id + 1), deleted ones
        included."""
        with self._reading():
            documents = self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
            last = self._db.execute("SELECT MAX(id) FROM passages").fetchone()[0]
        return int(documents), 0 if last is None else int(last) + 1

    def document_layout(self) -> DocumentLayout:
        """Where each document's passages start, and each document's author-note passage."""
        with self._reading():
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
        return DocumentLayout(np.array([r[2] for r in rows], dtype=np.int64), author_passage)

    def passages(self, rows: Sequence[int]) -> list[Passage]:
        """The passages at these rows, in the order asked, with their sentences."""
        wanted = [int(row) for row in rows]
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        with self._reading():
            found = dict(_read_passages(self._db, f"p.id IN ({marks})", tuple(wanted)))
        if len(found) != len(set(wanted)):
            raise IndexCorrupt(f"index at {self._generation} lacks passages it ranked")
        return [found[row] for row in wanted]

    def passage_doc_ids(self, rows: Sequence[int]) -> list[str]:
        """The doc id of each passage row, in the order asked."""
        wanted = [int(row) for row in rows]
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        with self._reading():
            found = dict(
                self._db.execute(
                    f"SELECT id, doc_id FROM passages WHERE id IN ({marks})", tuple(wanted)
                ).fetchall()
            )
        return [found[row] for row in wanted]

    def scope_ranges(
        self, doc: str | None, folder_prefix: str | None, fmt: str | None
    ) -> np.ndarray:
        """The passage rows of the documents matching every given condition, as sorted
        [start, end) ranges with neighbouring documents merged (documents are contiguous)."""
        with self._reading():
            found = self._db.execute(
                "SELECT MIN(p.id), MAX(p.id) + 1 FROM passages p JOIN documents d USING (doc_id) "
                "WHERE (?1 IS NULL OR d.doc_id = ?1) "
                "AND (?2 IS NULL OR substr(d.doc_id, 1, length(?2)) = ?2) "
                "AND (?3 IS NULL OR d.format = ?3) "
                "AND d.doc_id NOT IN (SELECT value FROM json_each(?4)) "
                "GROUP BY p.doc_id ORDER BY 1",
                (doc, folder_prefix, fmt, self._deleted),
            ).fetchall()
        merged: list[list[int]] = []
        for start, end in found:
            if merged and merged[-1][1] == start:
                merged[-1][1] = end
            else:
                merged.append([start, end])
        return np.array(merged, dtype=np.int64).reshape(-1, 2)

    def paragraph_ranges(self, paragraphs: Sequence[tuple[str, int]]) -> np.ndarray:
        """The passage rows of these (doc id, paragraph number) pairs, as sorted ranges."""
        found: list[tuple[int, int]] = []
        with self._reading():
            for doc_id, number in paragraphs:
                first, last = self._db.execute(
                    "SELECT MIN(id), MAX(id) FROM passages WHERE doc_id = ? AND paragraph = ? "
                    f"AND {NOT_DELETED}",
                    (doc_id, number, self._deleted),
                ).fetchone()
                if first is not None:
                    found.append((int(first), int(last) + 1))
        return np.array(sorted(found), dtype=np.int64).reshape(-1, 2)

    def document_rows(self, doc_ids: Sequence[str]) -> tuple[np.ndarray, int]:
        """The passage rows of these documents as sorted [start, end) ranges, and how many
        sentences those passages hold (deleted or not)."""
        ranges: list[tuple[int, int]] = []
        sentences = 0
        with self._reading():
            for doc_id in doc_ids:
                first, last, held = self._db.execute(
                    "SELECT MIN(id), MAX(id), SUM(sentence_count) FROM passages WHERE doc_id = ?",
                    (doc_id,),
                ).fetchone()
                if first is not None:
                    ranges.append((int(first), int(last) + 1))
                    sentences += int(held)
        return np.array(sorted(ranges), dtype=np.int64).reshape(-1, 2), sentences

    def has_document(self, doc_id: str) -> bool:
        with self._reading():
            found = self._db.execute(
                f"SELECT 1 FROM documents WHERE doc_id = ? AND {NOT_DELETED}",
                (doc_id, self._deleted),
            )
            return found.fetchone() is not None

    def formats(self) -> list[str]:
        """The formats of the indexed documents, sorted."""
        with self._reading():
            rows = self._db.execute(
                f"SELECT DISTINCT format FROM documents WHERE {NOT_DELETED} ORDER BY 1",
                (self._deleted,),
            )
            return [row[0] for row in rows]

    def documents(self) -> list[DocumentInfo]:
        with self._reading():
            rows = self._db.execute(
                "SELECT doc_id, title, format, paragraphs, metadata FROM documents "
                f"WHERE {NOT_DELETED} ORDER BY doc_id",
                (self._deleted,),
            ).fetchall()
        return [DocumentInfo(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def document(self, doc_id: str) -> DocumentView | None:
        """A stored document with its blocks and source, or None when there is no such id."""
        with self._reading():
            row = self._db.execute(
                "SELECT doc_id, title, format, paragraphs, metadata, source "
                f"FROM documents WHERE doc_id = ? AND {NOT_DELETED}",
                (doc_id, self._deleted),
            ).fetchone()
            if row is None:
                return None
            blocks = _read_blocks(self._db, doc_id)
        info = DocumentInfo(row[0], row[1], row[2], row[3], json.loads(row[4]))
        return DocumentView(info, blocks, row[5])

    def live_documents(self) -> list[tuple[str, FileRecord, int, int]]:
        """Every document not deleted, in row order: its id, file record, and [start, end)
        passage rows."""
        with self._reading():
            rows = self._db.execute(
                "SELECT d.doc_id, d.content_hash, d.size, d.mtime_ns, MIN(p.id), MAX(p.id) + 1 "
                "FROM documents d JOIN passages p USING (doc_id) "
                "WHERE d.doc_id NOT IN (SELECT value FROM json_each(?)) "
                "GROUP BY d.doc_id ORDER BY MIN(p.id)",
                (self._deleted,),
            ).fetchall()
        return [(r[0], FileRecord(r[1], r[2], r[3]), int(r[4]), int(r[5])) for r in rows]

    def chunked_documents(self, doc_ids: Sequence[str]) -> Iterator[ChunkedDocument]:
        """Stored documents back as chunked documents, so an unchanged file is never re-read."""
        for doc_id in doc_ids:
            with self._reading():
                row = self._db.execute(
                    "SELECT title, format, metadata, warnings, source FROM documents "
                    "WHERE doc_id = ?",
                    (doc_id,),
                ).fetchone()
                if row is None:
                    continue
                title, fmt, metadata, warnings, source = row
                passages = [p for _, p in _read_passages(self._db, "p.doc_id = ?", (doc_id,))]
                blocks = _read_blocks(self._db, doc_id)
            document = Document(
                doc_id, title, source, [], fmt, json.loads(metadata), json.loads(warnings)
            )
            yield ChunkedDocument(document, blocks, passages)

    # -- writing -------------------------------------------------------------------------

    def write_documents(self, documents: Iterable[tuple[ChunkedDocument, FileRecord]]) -> None:
        """Store documents in order; passage and sentence ids follow that order, from 0 in a
        new segment and on from where the last call left off."""
        passage_id = self._next_passage
        sentence_id = self._next_sentence
        db = self._db
        for chunked, record in documents:
            document = chunked.document
            blocks = chunked.blocks
            db.execute(
                "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    document.doc_id,
                    document.title,
                    document.format,
                    json.dumps(document.metadata, default=str),
                    json.dumps(document.warnings),
                    document.source,
                    record.content_hash,
                    record.size,
                    record.mtime_ns,
                    sum(1 for b in blocks if b.kind == "paragraph"),
                ),
            )
            db.executemany(
                "INSERT INTO blocks VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        document.doc_id,
                        seq,
                        b.kind,
                        b.number,
                        b.section,
                        b.page,
                        b.text,
                        b.char_start,
                        b.char_end,
                    )
                    for seq, b in enumerate(blocks)
                ],
            )
            for passage in chunked.passages:
                db.execute(
                    "INSERT INTO passages VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        passage_id,
                        passage.doc_id,
                        passage.paragraph,
                        passage.window,
                        passage.section,
                        passage.page,
                        passage.text,
                        passage.char_start,
                        passage.char_end,
                        sentence_id,
                        len(passage.sentences),
                    ),
                )
                db.executemany(
                    "INSERT INTO sentences VALUES (?,?,?,?,?,?,?)",
                    [
                        (
                            sentence_id + i,
                            passage_id,
                            s.text,
                            s.start,
                            s.end,
                            s.char_start,
                            s.char_end,
                        )
                        for i, s in enumerate(passage.sentences)
                    ],
                )
                passage_id += 1
                sentence_id += len(passage.sentences)
        db.commit()
        self._next_passage, self._next_sentence = passage_id, sentence_id

    # -- helpers -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        with self._lock, reading(self._generation):
            yield


@contextlib.contextmanager
def reading(generation: Path) -> Iterator[None]:
    """Index reads in this block fail with IndexCorrupt instead of SQLite or OS errors."""
    try:
        yield
    except (sqlite3.DatabaseError, OSError) as error:
        message = f"index at {generation} is unreadable ({error}); {REBUILD_HINT}"
        raise IndexCorrupt(message) from error


def write_sentence_offsets(generation: Path, sentence_counts: Sequence[int]) -> None:
    """Where each passage's sentences start among sentence rows, then the total."""
    offsets = np.zeros(len(sentence_counts) + 1, dtype=np.int64)
    np.cumsum(np.asarray(sentence_counts, dtype=np.int64), out=offsets[1:])
    np.save(generation / SENTENCE_OFFSETS, offsets)


def read_sentence_offsets(generation: Path) -> np.ndarray:
    """The offsets written by `write_sentence_offsets`, memory-mapped read-only."""
    path = generation / SENTENCE_OFFSETS
    try:
        offsets = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        raise IndexCorrupt(f"cannot read {path}: {error}; {REBUILD_HINT}") from error
    if offsets.ndim != 1 or len(offsets) == 0:
        raise IndexCorrupt(f"{path} is malformed; {REBUILD_HINT}")
    return offsets


def _read_sentences(db: sqlite3.Connection, first: int, count: int) -> tuple[Sentence, ...]:
    rows = db.execute(
        "SELECT text, start, end, char_start, char_end FROM sentences "
        "WHERE id >= ? AND id < ? ORDER BY id",
        (first, first + count),
    )
    return tuple(Sentence(*row) for row in rows)


def _read_blocks(db: sqlite3.Connection, doc_id: str) -> list[DocumentBlock]:
    rows = db.execute(
        "SELECT kind, number, section, page, text, char_start, char_end FROM blocks "
        "WHERE doc_id = ? ORDER BY seq",
        (doc_id,),
    )
    return [DocumentBlock(*row) for row in rows]


def _read_passages(
    db: sqlite3.Connection, where: str, params: tuple[object, ...]
) -> list[tuple[int, Passage]]:
    """(id, passage) of stored passages matching a condition on `passages p`, in id order."""
    rows = db.execute(
        "SELECT p.id, p.doc_id, d.title, p.paragraph, p.section, p.page, p.text, p.char_start, "
        "p.char_end, p.window, p.first_sentence, p.sentence_count "
        f"FROM passages p JOIN documents d USING (doc_id) WHERE {where} ORDER BY p.id",
        params,
    ).fetchall()
    return [
        (
            int(row[0]),
            Passage(
                doc_id=row[1],
                title=row[2],
                paragraph=row[3],
                section=row[4],
                page=row[5],
                text=row[6],
                char_start=row[7],
                char_end=row[8],
                sentences=_read_sentences(db, row[10], row[11]),
                window=row[9],
            ),
        )
        for row in rows
    ]


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
