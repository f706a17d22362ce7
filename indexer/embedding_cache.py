"""The embedding cache: vectors by text hash, so unchanged text is never embedded twice."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from indexer.encoders import Span
from indexer.text import slug, text_hash


def cache_file(index_dir: Path, model: str, backend: str) -> Path:
    """The embedding cache an index folder keeps for one model and backend."""
    return index_dir / "cache" / f"{slug(model, 80)}-{backend}.sqlite"


class EmbeddingCache:
    """Vectors by text hash, per model and backend, so unchanged text is never embedded twice.

    Rows are committed as they are computed, so an interrupted run keeps its work.
    """

    def __init__(self, path: Path, dimension: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dimension = dimension
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (hash BLOB PRIMARY KEY, vector BLOB)")

    def lookup(self, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 900):
            batch = unique[start : start + 900]
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(
                f"SELECT hash, vector FROM vectors WHERE hash IN ({marks})", batch
            )
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def store(self, hashes: Sequence[bytes], vectors: np.ndarray) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
            [
                (key, vector.astype(np.float32).tobytes())
                for key, vector in zip(hashes, vectors, strict=True)
            ],
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def span_key(text: str, span: Span, in_context: bool) -> bytes:
    """Cache key of a span's vector: read in the context of its text, or on its own (then
    the same key as any text equal to the span's)."""
    if in_context:
        return text_hash(f"{text}\x00{span[0]}:{span[1]}")
    return text_hash(text[span[0] : span[1]])


def joined_key(text: str, spans: Sequence[Span], layer: int) -> bytes:
    """Cache key of a text's vector joined from its pieces (its lead and its `spans`) after
    `layer`: the same text cut into other pieces, or joined after another layer, differs."""
    cuts = ",".join(f"{a}:{b}" for a, b in spans)
    return text_hash(f"joined{layer}\x00{text}\x00{cuts}")
