"""Vector indexes: the protocol search uses, and its implementation on numpy + FAISS.

Vectors live in `.npy` files opened memory-mapped and read-only, so a server's memory holds
only the pages a question touches. An approximate (ANN) FAISS structure over the same rows
can be stored beside them; its candidates are always rescored exactly from the vectors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from indexer.errors import REBUILD_HINT, IndexCorrupt
from indexer.ranking import RowRanges, RowScores, best_of

# Rows multiplied with the question at once by the exact scan (bounded memory per question),
# and added to an ANN structure at once while it is built.
SCAN_CHUNK = 32768
# At most this many rows train an ANN structure's quantiser (in blocks spread evenly).
TRAINING_ROWS = 200_000
TRAINING_BLOCK = 1000
# The ANN structure returns this many times more rows than asked, rescored exactly.
ANN_OVERSAMPLE = 2
# A search within rows (a filter's scope) this few is an exact scan of just those rows; a
# wider one filters an ANN search widened SCOPE_OVERSAMPLE times per round until it holds
# enough rows in scope.
EXACT_IN_SCOPE = 50_000
SCOPE_OVERSAMPLE = 4
# How sentence vectors are stored. float16 halves the file and leaves the rankings of the
# seeds alone, but numpy converts the candidates' sentences back to float32 at about 1.4 ms
# per question (2,000 sentences), 10% of a SciFact question: float32 until the conversion is
# done by SIMD code (FAISS' fp16 scalar quantiser, say).
SENTENCE_DTYPE: type[np.floating] = np.float32
# Vector files larger than this are read row by row rather than memory-mapped (FileRows).
MAP_LIMIT_BYTES = 1 << 30


class VectorIndex(Protocol):
    """Vectors addressed by row id, searched by inner product (cosine on unit vectors)."""

    @property
    def dimension(self) -> int: ...

    def __len__(self) -> int:
        """Rows ever added, removed ones included (row ids are positions)."""
        ...

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append vectors; return their row ids."""
        ...

    def remove(self, rows: np.ndarray) -> None:
        """Leave these rows out of every later search."""
        ...

    def search(self, query: np.ndarray, n: int, within: RowRanges | None = None) -> RowScores:
        """The `n` rows closest to `query`, best first, with exact scores; only rows
        `within` those ranges when given (a filter applied before ranking)."""
        ...

    def score(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact scores of `query` against the given rows, in their order."""
        ...

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of the given rows as float32."""
        ...


@dataclass(frozen=True, slots=True)
class AnnConfig:
    """A FAISS ANN structure: its factory string and how wide it searches."""

    factory: str
    ef_search: int = 0  # HNSW
    nprobe: int = 0  # IVF

    def build(self, vectors: np.ndarray) -> faiss.Index:
        """The structure trained on and filled with `vectors` (float32, unit length)."""
        return self._build(len(vectors), vectors.shape[1], lambda start, stop: vectors[start:stop])

    def write_from_file(self, vectors_path: Path, path: Path) -> None:
        """Build the structure over the vectors of a `.npy` file and save it at `path`.

        The vectors are read a block at a time, not mapped: a million of them would
        otherwise stay in the indexing run's resident memory (1.5 GB) while it builds.
        """
        mapped = np.load(vectors_path, mmap_mode="r")
        rows, dimension, dtype, offset = len(mapped), mapped.shape[1], mapped.dtype, mapped.offset
        del mapped
        row_bytes = dimension * dtype.itemsize

        def read(start: int, stop: int) -> np.ndarray:
            block = np.fromfile(
                vectors_path,
                dtype=dtype,
                count=(stop - start) * dimension,
                offset=offset + start * row_bytes,
            )
            return block.reshape(-1, dimension)

        faiss.write_index(self._build(rows, dimension, read), str(path))

    def _build(
        self, rows: int, dimension: int, read: Callable[[int, int], np.ndarray]
    ) -> faiss.Index:
        index = faiss.index_factory(dimension, self.factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            if rows <= TRAINING_ROWS:
                sample = read(0, rows)
            else:  # blocks spread evenly over the rows
                blocks = TRAINING_ROWS // TRAINING_BLOCK
                starts = [k * (rows - TRAINING_BLOCK) // (blocks - 1) for k in range(blocks)]
                sample = np.concatenate([read(a, a + TRAINING_BLOCK) for a in starts])
            index.train(np.ascontiguousarray(sample, dtype=np.float32))
        for start in range(0, rows, SCAN_CHUNK):
            block = read(start, min(start + SCAN_CHUNK, rows))
            index.add(np.ascontiguousarray(block, dtype=np.float32))
        self.tune(index)
        return index

    def tune(self, index: faiss.Index) -> None:
        """Set the search width on an index built or read with this configuration."""
        if self.ef_search:
            faiss.ParameterSpace().set_index_parameter(index, "efSearch", self.ef_search)
        if self.nprobe:
            faiss.ParameterSpace().set_index_parameter(index, "nprobe", self.nprobe)

    def to_dict(self) -> dict[str, Any]:
        """As recorded in an index manifest."""
        return {"factory": self.factory, "ef_search": self.ef_search, "nprobe": self.nprobe}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnnConfig:
        return cls(str(data["factory"]), int(data["ef_search"]), int(data["nprobe"]))


def ann_config_for(rows: int) -> AnnConfig:
    """The ANN structure for an index of this many rows.

    HNSW with 8-bit scalar-quantised vectors: recall@100 0.997 against exact on SciFact
    and 1.000 on SQuAD (rescored), in 656 bytes per vector where HNSW over float32
    vectors takes 1,808; IVF-SQ8 needs far more lists probed for the same recall
    (bench/ann_recall.py, BENCHMARKS.md). A larger graph needs a wider search for the same
    recall: on 100,000 passages recombined from SciFact's (bench/scale.py), efSearch 256
    gave 0.967, 512 gave 0.985 (1.2 ms) and 1024 gave 0.998 (2.6 ms).
    """
    if rows < 100_000:
        return AnnConfig("HNSW32,SQ8", ef_search=256)
    return AnnConfig("HNSW32,SQ8", ef_search=512 if rows < 1_000_000 else 1024)


class FileRows:
    """The rows of a `.npy` matrix, read from the file with positioned reads, not mapped.

    A mapped file's pages stay in the reader's resident memory once touched, with their
    neighbours (the kernel maps the cached pages around each fault): a server mapping a
    7 GB sentence-vector file shows most of it as its own RSS after a thousand questions.
    Read instead, rows cost a system call per run of consecutive rows (a few µs); the
    page cache keeps them just the same.
    """

    def __init__(self, path: Path, header: np.ndarray) -> None:
        self.shape: tuple[int, int] = (int(header.shape[0]), int(header.shape[1]))
        self.dtype = header.dtype
        self._offset = int(getattr(header, "offset", 0))
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._file = open(path, "rb")  # noqa: SIM115 - closed with this object
        self._path = path

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        """Rows by position (an array of row numbers, any order) or a slice of them."""
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise ValueError("rows are read by steps of one")
            return self.take(np.arange(start, max(start, stop), dtype=np.int64))
        return self.take(np.asarray(key, dtype=np.int64))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows, in their order."""
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        if len(rows) == 0:
            return out
        in_order = bool(np.all(rows[1:] >= rows[:-1]))  # as callers mostly ask: no reordering
        order = None if in_order else np.argsort(rows, kind="stable")
        ascending = rows if order is None else rows[order]
        if ascending[0] < 0 or ascending[-1] >= len(self):
            raise IndexError(f"rows out of range 0..{len(self) - 1} in {self._path}")
        breaks = np.flatnonzero(np.diff(ascending) != 1) + 1
        starts = np.concatenate(([0], breaks)).tolist()
        ends = np.concatenate((breaks, [len(rows)])).tolist()
        read = out if order is None else np.empty_like(out)
        into = read.data.cast("B")
        size, fd = self._row_bytes, self._file.fileno()
        for start, end in zip(starts, ends, strict=True):
            at = self._offset + int(ascending[start]) * size
            if os.preadv(fd, [into[start * size : end * size]], at) != (end - start) * size:
                raise IndexCorrupt(f"vectors {self._path} are cut short; {REBUILD_HINT}")
        if order is not None:
            out[order] = read
        return out


class FaissVectorIndex:
    """Vectors in a `.npy` file (memory-mapped, or read by row when large; exact search),
    with an optional FAISS ANN structure.

    Rows added after opening are kept in memory until the index is saved; removed rows are
    a deletion mask.
    """

    def __init__(
        self,
        stored: np.ndarray | FileRows,
        ann: faiss.Index | None = None,
        ann_config: AnnConfig | None = None,
    ) -> None:
        self._stored = stored
        # The same memory without np.memmap's per-access bookkeeping (still read-only).
        self._rows = stored.view(np.ndarray) if isinstance(stored, np.ndarray) else stored
        self._added = np.zeros((0, stored.shape[1]), dtype=np.float32)
        self._deleted: np.ndarray | None = None
        self._ann = ann
        self.ann_config = ann_config

    def view(self) -> FaissVectorIndex:
        """The same stored vectors and ANN structure (shared, not copied), without rows
        added or removed since opening: for another set of deletions."""
        return FaissVectorIndex(self._stored, self._ann, self.ann_config)

    @classmethod
    def empty(cls, dimension: int) -> FaissVectorIndex:
        """An index with no rows, to `add` to and `save`."""
        return cls(np.zeros((0, dimension), dtype=np.float32))

    @classmethod
    def open(cls, path: Path, ann_config: AnnConfig | None = None) -> FaissVectorIndex:
        """The vectors stored in the `.npy` file at `path`, memory-mapped read-only (read
        row by row from the file when it is larger than MAP_LIMIT_BYTES).

        With `ann_config`, the ANN structure stored beside them is read and used to search.
        """
        try:
            mapped = np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as error:
            raise IndexCorrupt(f"cannot read vectors {path}: {error}; {REBUILD_HINT}") from error
        if mapped.ndim != 2:
            raise IndexCorrupt(f"vectors {path} are not a matrix; {REBUILD_HINT}")
        stored = FileRows(path, mapped) if mapped.nbytes > MAP_LIMIT_BYTES else mapped
        ann = None
        if ann_config is not None:
            ann_path = ann_path_of(path)
            try:
                ann = faiss.read_index(str(ann_path))
            except RuntimeError as error:
                message = f"cannot read ANN index {ann_path}: {error}; {REBUILD_HINT}"
                raise IndexCorrupt(message) from error
            if ann.ntotal != len(stored):
                message = f"ANN index {ann_path} does not match its vectors; {REBUILD_HINT}"
                raise IndexCorrupt(message)
            ann_config.tune(ann)
        return cls(stored, ann, ann_config)

    def save(
        self,
        path: Path,
        *,
        dtype: type[np.floating] = np.float32,
        ann_config: AnnConfig | None = None,
    ) -> None:
        """Write the vectors as a `.npy` file in `dtype`, and the ANN structure if configured."""
        everything = self.vectors(np.arange(len(self), dtype=np.int64))
        np.save(path, everything.astype(dtype))
        if ann_config is not None:
            faiss.write_index(ann_config.build(everything), str(ann_path_of(path)))

    @property
    def dimension(self) -> int:
        return int(self._stored.shape[1])

    @property
    def uses_ann(self) -> bool:
        return self._ann is not None

    def __len__(self) -> int:
        return len(self._stored) + len(self._added)

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append vectors (kept in memory until saved); return their row ids."""
        data = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        rows = np.arange(len(self), len(self) + len(data), dtype=np.int64)
        self._added = np.concatenate([self._added, data])
        if self._ann is not None and len(data):
            self._ann.add(data)
        if self._deleted is not None:
            self._deleted = np.concatenate([self._deleted, np.zeros(len(data), dtype=bool)])
        return rows

    def remove(self, rows: np.ndarray) -> None:
        if self._deleted is None:
            self._deleted = np.zeros(len(self), dtype=bool)
        self._deleted[np.asarray(rows, dtype=np.int64)] = True

    def search(self, query: np.ndarray, n: int, within: RowRanges | None = None) -> RowScores:
        if n <= 0 or len(self) == 0:
            return RowScores.empty()
        if within is not None and within.count < len(self):
            return self._search_within(query, n, within)
        if self._ann is not None:
            return self._search_ann(query, n)
        return self._search_exact(query, n)

    def score(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.vectors(rows) @ np.asarray(query, dtype=np.float32))

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        stored = len(self._stored)
        if len(self._added) == 0 or (len(rows) and rows.max() < stored):
            return self._rows[rows].astype(np.float32, copy=False)
        out = np.empty((len(rows), self.dimension), dtype=np.float32)
        old = rows < stored
        out[old] = self._rows[rows[old]]
        out[~old] = self._added[rows[~old] - stored]
        return out

    def _search_within(self, query: np.ndarray, n: int, within: RowRanges) -> RowScores:
        if within.count <= EXACT_IN_SCOPE or self._ann is None:
            return self._search_exact(query, n, within.slices(SCAN_CHUNK))
        wanted = n
        while True:
            wanted = min(wanted * SCOPE_OVERSAMPLE, len(self))
            found = self._search_ann(query, wanted)
            inside = within.contains(found.rows)
            if inside.sum() >= n or wanted >= len(self):
                return RowScores(found.rows[inside][:n], found.scores[inside][:n])

    def _search_exact(
        self, query: np.ndarray, n: int, slices: list[tuple[int, int]] | None = None
    ) -> RowScores:
        """A scan over the stored vectors (or the given [start, end) slices of them) in
        chunks of SCAN_CHUNK rows."""
        q = np.asarray(query, dtype=np.float32)
        best: list[RowScores] = []
        if slices is None:
            slices = [
                (start, min(start + SCAN_CHUNK, len(self)))
                for start in range(0, len(self), SCAN_CHUNK)
            ]
        if not slices:
            return RowScores.empty()
        for start, end in slices:
            rows = np.arange(start, end, dtype=np.int64)
            if rows[-1] < len(self._stored):
                block = self._rows[start : rows[-1] + 1].astype(np.float32, copy=False)
            else:
                block = self.vectors(rows)
            scores = block @ q
            if self._deleted is not None:
                scores[self._deleted[rows]] = -np.inf
            best.append(best_of(rows, scores, n))
        merged = best[0] if len(best) == 1 else _merge(best, n)
        return _without_deleted(merged)

    def _search_ann(self, query: np.ndarray, n: int) -> RowScores:
        """ANN candidates, rescored exactly from the stored vectors."""
        assert self._ann is not None
        wanted = min(n * ANN_OVERSAMPLE, len(self))
        _, labels = self._ann.search(np.asarray(query, dtype=np.float32).reshape(1, -1), wanted)
        rows = labels[0][labels[0] >= 0].astype(np.int64)
        if self._deleted is not None:
            rows = rows[~self._deleted[rows]]
        rows = np.sort(rows)
        return best_of(rows, self.score(query, rows), n)


class SegmentedVectors:
    """The vectors of several segments as one row space (rows numbered segment after segment).

    Each segment is searched on its own (with its own ANN structure, if any) and the best
    rows of all are merged; rows of deleted documents are removed from their segment.
    """

    def __init__(self, segments: Sequence[FaissVectorIndex]) -> None:
        if not segments:
            raise ValueError("a vector index needs at least one segment")
        self._segments = list(segments)
        self._bases = np.cumsum([0] + [len(s) for s in self._segments]).astype(np.int64)

    @property
    def dimension(self) -> int:
        return self._segments[0].dimension

    @property
    def uses_ann(self) -> bool:
        """Whether any segment is searched through an ANN structure."""
        return any(segment.uses_ann for segment in self._segments)

    def __len__(self) -> int:
        return int(self._bases[-1])

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append vectors to the last segment; return their row ids."""
        rows = self._segments[-1].add(vectors) + self._bases[-2]
        self._bases[-1] += len(rows)
        return rows

    def remove(self, rows: np.ndarray) -> None:
        for at, local in self._split(np.asarray(rows, dtype=np.int64)):
            self._segments[at].remove(local)

    def search(self, query: np.ndarray, n: int, within: RowRanges | None = None) -> RowScores:
        found: list[RowScores] = []
        for at, segment in enumerate(self._segments):
            base, end = int(self._bases[at]), int(self._bases[at + 1])
            local_within = None
            if within is not None:
                local_within = within.clipped(base, end)
                if local_within.count == 0:
                    continue
            best = segment.search(query, n, local_within)
            found.append(RowScores(best.rows + base, best.scores))
        if not found:
            return RowScores.empty()
        return found[0] if len(found) == 1 else _merge(found, n)

    def score(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.vectors(rows) @ np.asarray(query, dtype=np.float32))

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if len(self._segments) == 1:
            return self._segments[0].vectors(rows)
        out = np.empty((len(rows), self.dimension), dtype=np.float32)
        at = np.searchsorted(self._bases, rows, side="right") - 1
        for segment in np.unique(at):
            mine = at == segment
            out[mine] = self._segments[segment].vectors(rows[mine] - self._bases[segment])
        return out

    def _split(self, rows: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """The rows of each segment, as (segment position, local rows)."""
        at = np.searchsorted(self._bases, rows, side="right") - 1
        return [
            (int(segment), rows[at == segment] - self._bases[segment]) for segment in np.unique(at)
        ]


class VectorFileWriter:
    """A `.npy` file of vectors written a block at a time (its row count is set on close)."""

    # Room for the header: numpy pads it with spaces, so the real shape is written over it.
    HEADER_BYTES = 128

    def __init__(self, path: Path, dimension: int, dtype: type[np.floating]) -> None:
        self.path = path
        self.dimension = dimension
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._file.write(b"\0" * self.HEADER_BYTES)

    def append(self, vectors: np.ndarray) -> None:
        block = np.ascontiguousarray(vectors, dtype=self.dtype).reshape(-1, self.dimension)
        self._file.write(block.tobytes())
        self.rows += len(block)

    def close(self) -> None:
        """Write the header with the final shape (once; later calls do nothing)."""
        if self._file.closed:
            return
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.rows, self.dimension),
        }
        text = repr(header).encode("latin1")
        prefix = np.lib.format.magic(1, 0)
        room = self.HEADER_BYTES - len(prefix) - 2 - 1
        if len(text) > room:
            raise ValueError(f"a .npy header of {len(text)} bytes does not fit in {room}")
        self._file.seek(0)
        self._file.write(prefix + (room + 1).to_bytes(2, "little") + text.ljust(room) + b"\n")
        self._file.close()


ANN_SUFFIX = ".ann.faiss"


def ann_path_of(path: Path) -> Path:
    """Where the ANN structure over the vectors in `path` (a `.npy` file) is stored."""
    return path.with_name(path.name.removesuffix(".npy") + ANN_SUFFIX)


def check_vector_file(path: Path, shape: tuple[int, ...], dtype: type[np.generic]) -> None:
    """IndexCorrupt unless `path` is a `.npy` array of this shape and type, of full length.

    Reads the header and the file size only.
    """
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            found_shape, fortran, found_dtype = read_header(handle)
            offset = handle.tell()
            size = os.fstat(handle.fileno()).st_size
    except (OSError, ValueError) as error:
        raise IndexCorrupt(f"cannot read {path}: {error}; {REBUILD_HINT}") from error
    expected = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if found_shape != shape or found_dtype != np.dtype(dtype) or fortran or size != expected:
        raise IndexCorrupt(
            f"{path} is damaged (expected {np.dtype(dtype).name} of shape {shape}); {REBUILD_HINT}"
        )


def _merge(parts: list[RowScores], n: int) -> RowScores:
    rows = np.concatenate([part.rows for part in parts])
    scores = np.concatenate([part.scores for part in parts])
    return best_of(rows, scores, n)


def _without_deleted(found: RowScores) -> RowScores:
    keep = np.isfinite(found.scores)
    if keep.all():
        return found
    return RowScores(found.rows[keep], found.scores[keep])
