"""The index folder: self-describing, written as generations and switched atomically.

Layout of an index folder::

    CURRENT                 name of the live generation, replaced atomically
    lock                    held (flock) by the one indexing run allowed at a time
    cache/                  embedding cache per model and backend
    gen-<stamp>/            one complete generation
        manifest.json       format version, model, dimension, chunking, counts
        meta.sqlite         documents, blocks, passages, sentences
        passages.faiss      one vector per passage (row = passage id)
        sentences.faiss     one vector per sentence (row = sentence id)
        lexical/            bm25s index over title + section + passage text
        lexical-sentences/  bm25s index over each sentence
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bm25s
import faiss
import numpy as np

from indexer.chunking import ChunkedDocument
from indexer.errors import IndexBusy, IndexCorrupt, IndexNotFound, ModelMismatch
from indexer.models import Document, DocumentBlock, IndexStats, Passage, Sentence

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
META = "meta.sqlite"
PASSAGE_VECTORS = "passages.faiss"
SENTENCE_VECTORS = "sentences.faiss"
LEXICAL = "lexical"
SENTENCE_LEXICAL = "lexical-sentences"
# What bm25s saves in a lexical folder.
LEXICAL_FILES = (
    "params.index.json",
    "vocab.index.json",
    "data.csc.index.npy",
    "indices.csc.index.npy",
    "indptr.csc.index.npy",
)
# Anserini's BM25 parameters; on SQuAD part A they beat bm25s' defaults (1.5, 0.75).
BM25_K1 = 0.9
BM25_B = 0.4
CURRENT = "CURRENT"
REBUILD_HINT = "repair it with `paracite index <folder> --rebuild`"

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
"""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What an index generation says about itself."""

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

    @classmethod
    def read(cls, generation: Path) -> Manifest:
        try:
            data = json.loads((generation / MANIFEST).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError) as error:
            message = f"index manifest in {generation} is unreadable: {error}; {REBUILD_HINT}"
            raise IndexCorrupt(message) from error

    def write(self, generation: Path) -> None:
        (generation / MANIFEST).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

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
        )

    def check_compatible(self, model: str | None = None, backend: str | None = None) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ModelMismatch(
                f"index format version {self.format_version} is not supported "
                f"(this paracite reads version {FORMAT_VERSION}); rebuild it with "
                "`paracite index --rebuild`"
            )
        if model is not None and (model, backend) != (self.model, self.backend):
            raise ModelMismatch(
                f"index was built with model {self.model!r} ({self.backend}), not {model!r} "
                f"({backend}); re-index with `paracite index --rebuild` to switch models"
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


def check_generation(generation: Path, manifest: Manifest) -> None:
    """IndexCorrupt unless the generation's files are all there and agree with its manifest.

    Cheap: a few stat calls, file headers and two small queries; it does not read the vectors.
    """
    check_meta(generation, manifest)
    check_vectors(generation / PASSAGE_VECTORS, manifest.passages, manifest.dimension)
    check_vectors(generation / SENTENCE_VECTORS, manifest.sentences, manifest.dimension)
    check_lexical(generation / LEXICAL, manifest.passages)
    check_lexical(generation / SENTENCE_LEXICAL, manifest.sentences)


def check_meta(generation: Path, manifest: Manifest) -> None:
    """IndexCorrupt unless the metadata opens and holds the manifest's documents and passages."""
    db = open_meta(generation, readonly=True)
    try:
        with reading(generation):
            documents = db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
            last = db.execute("SELECT MAX(id) FROM passages").fetchone()[0]
    finally:
        db.close()
    passages = 0 if last is None else last + 1
    if (documents, passages) != (manifest.documents, manifest.passages):
        raise IndexCorrupt(
            f"index at {generation} is inconsistent: {META} holds {documents} documents and "
            f"{passages} passages, the manifest {manifest.documents} and {manifest.passages}; "
            f"{REBUILD_HINT}"
        )


def file_stamps(generation: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file of a generation (they never change once live)."""
    stamps = {}
    with reading(generation):
        for path in sorted(generation.rglob("*")):
            if path.is_file():
                stat = path.stat()
                stamps[path.relative_to(generation).as_posix()] = (stat.st_size, stat.st_mtime_ns)
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


def new_generation(index_dir: Path) -> Path:
    """A fresh, empty, not-yet-live generation folder."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    generation = index_dir / f"gen-{stamp}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}.tmp"
    generation.mkdir(parents=True)
    return generation


def publish_generation(index_dir: Path, staged: Path) -> Path:
    """Make a complete staged generation live with one atomic rename of CURRENT."""
    final = staged.with_name(staged.name.removesuffix(".tmp"))
    _fsync_tree(staged)
    staged.rename(final)
    pointer_tmp = index_dir / f"{CURRENT}.tmp"
    with open(pointer_tmp, "w", encoding="utf-8") as handle:
        handle.write(final.name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(pointer_tmp, index_dir / CURRENT)
    _fsync_dir(index_dir)
    return final


def prune_generations(index_dir: Path, keep: int = 2) -> None:
    """Remove abandoned staging folders and all but the newest `keep` generations.

    The previous generation is kept so a server that opened it keeps working. A broken
    CURRENT counts as no live generation, so that `--rebuild` can repair it.
    """
    try:
        live = current_generation(index_dir)
    except IndexCorrupt:
        live = None
    for leftover in index_dir.glob("gen-*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    finished = sorted(
        (path for path in index_dir.glob("gen-*") if path.is_dir() and path != live),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for old in finished[max(keep - 1, 0) :]:
        shutil.rmtree(old, ignore_errors=True)


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


@contextlib.contextmanager
def reading(generation: Path) -> Iterator[None]:
    """Index reads in this block fail with IndexCorrupt instead of SQLite or OS errors."""
    try:
        yield
    except (sqlite3.DatabaseError, OSError) as error:
        message = f"index at {generation} is unreadable ({error}); {REBUILD_HINT}"
        raise IndexCorrupt(message) from error


def open_meta(generation: Path, *, readonly: bool) -> sqlite3.Connection:
    path = generation / META
    if readonly:
        if not path.is_file():
            raise IndexCorrupt(f"index at {generation} has no {META}; {REBUILD_HINT}")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        db = sqlite3.connect(path)
        db.executescript(SCHEMA)
    return db


def write_vectors(path: Path, vectors: np.ndarray, dimension: int) -> None:
    index = faiss.IndexFlatIP(dimension)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, str(path))


def read_vectors(path: Path) -> faiss.Index:
    try:
        return faiss.read_index(str(path))
    except RuntimeError as error:
        raise IndexCorrupt(f"cannot read vectors {path}: {error}; {REBUILD_HINT}") from error


def check_vectors(path: Path, count: int, dimension: int) -> None:
    """IndexCorrupt unless `path` is a flat FAISS index of `count` vectors of `dimension`.

    Checks the header and the file size only (a flat index is a fixed header plus the floats).
    """
    header_size = len(faiss.serialize_index(faiss.IndexFlatIP(dimension)))
    try:
        with open(path, "rb") as handle:
            header = handle.read(16)
            size = os.fstat(handle.fileno()).st_size
    except OSError as error:
        raise IndexCorrupt(f"cannot read vectors {path}: {error}; {REBUILD_HINT}") from error
    wanted = b"IxFI" + dimension.to_bytes(4, "little") + count.to_bytes(8, "little")
    if header != wanted or size != header_size + count * dimension * 4:
        raise IndexCorrupt(
            f"vectors {path} are damaged (expected {count} vectors of dimension {dimension}); "
            f"{REBUILD_HINT}"
        )


def vectors_of(index: faiss.Index) -> np.ndarray:
    """The stored vectors of a flat index as an (n, d) array."""
    if index.ntotal == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    return np.asarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)


def write_lexical(path: Path, documents: list[list[str]]) -> None:
    """A BM25 index over pre-analysed terms (nothing is written for an empty collection)."""
    if documents:
        lexical = bm25s.BM25(k1=BM25_K1, b=BM25_B)
        lexical.index(documents, show_progress=False)
        lexical.save(str(path), show_progress=False)


def read_lexical(path: Path, count: int) -> bm25s.BM25 | None:
    """The BM25 index over `count` texts; None only for an empty collection (none is written)."""
    check_lexical(path, count)
    if count == 0 and not path.exists():
        return None
    try:
        return bm25s.BM25.load(str(path), show_progress=False)
    except (OSError, ValueError) as error:
        message = f"lexical index {path} is unreadable: {error}; {REBUILD_HINT}"
        raise IndexCorrupt(message) from error


def check_lexical(path: Path, count: int) -> None:
    """IndexCorrupt unless `path` holds a bm25s index over `count` texts (files and params)."""
    if count == 0 and not path.exists():
        return  # an empty collection has no lexical index
    if not path.is_dir():
        raise IndexCorrupt(f"lexical index {path} is missing; {REBUILD_HINT}")
    missing = [name for name in LEXICAL_FILES if not (path / name).is_file()]
    if missing:
        raise IndexCorrupt(f"lexical index {path} lacks {', '.join(missing)}; {REBUILD_HINT}")
    try:
        params = json.loads((path / "params.index.json").read_text(encoding="utf-8"))
        documents = params["num_docs"]
    except (OSError, ValueError, TypeError, KeyError) as error:
        message = f"lexical index {path} is unreadable: {error}; {REBUILD_HINT}"
        raise IndexCorrupt(message) from error
    if documents != count:
        raise IndexCorrupt(
            f"lexical index {path} covers {documents} texts, not {count}; {REBUILD_HINT}"
        )


def read_sentences(db: sqlite3.Connection, first: int, count: int) -> tuple[Sentence, ...]:
    rows = db.execute(
        "SELECT text, start, end, char_start, char_end FROM sentences "
        "WHERE id >= ? AND id < ? ORDER BY id",
        (first, first + count),
    )
    return tuple(Sentence(*row) for row in rows)


def read_blocks(db: sqlite3.Connection, doc_id: str) -> list[DocumentBlock]:
    rows = db.execute(
        "SELECT kind, number, section, page, text, char_start, char_end FROM blocks "
        "WHERE doc_id = ? ORDER BY seq",
        (doc_id,),
    )
    return [DocumentBlock(*row) for row in rows]


def read_passages(db: sqlite3.Connection, where: str, params: tuple[object, ...]) -> list[Passage]:
    """Stored passages matching a condition on `passages p`, in id order, with sentences."""
    rows = db.execute(
        "SELECT p.doc_id, d.title, p.paragraph, p.section, p.page, p.text, p.char_start, "
        "p.char_end, p.window, p.first_sentence, p.sentence_count "
        f"FROM passages p JOIN documents d USING (doc_id) WHERE {where} ORDER BY p.id",
        params,
    ).fetchall()
    return [
        Passage(
            doc_id=row[0],
            title=row[1],
            paragraph=row[2],
            section=row[3],
            page=row[4],
            text=row[5],
            char_start=row[6],
            char_end=row[7],
            sentences=read_sentences(db, row[9], row[10]),
            window=row[8],
        )
        for row in rows
    ]


def read_chunked_documents(
    db: sqlite3.Connection, doc_ids: Sequence[str]
) -> Iterator[ChunkedDocument]:
    """Stored documents back as chunked documents, so an unchanged file is never re-read."""
    for doc_id in doc_ids:
        row = db.execute(
            "SELECT title, format, metadata, warnings, source FROM documents WHERE doc_id = ?",
            (doc_id,),
        ).fetchone()
        if row is None:
            continue
        title, fmt, metadata, warnings, source = row
        document = Document(
            doc_id, title, source, [], fmt, json.loads(metadata), json.loads(warnings)
        )
        passages = read_passages(db, "p.doc_id = ?", (doc_id,))
        yield ChunkedDocument(document, read_blocks(db, doc_id), passages)


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
