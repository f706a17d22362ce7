"""Recall@100 of FAISS ANN structures against exact search, on the real eval-index vectors.

For each eval index (SQuAD part A and SciFact by default, as `paracite eval` built them in
`$PARACITE_CACHE_DIR/eval/`), the passage vectors are read from the live generation and
the eval questions are embedded with the index's model as queries (`--queries` of them,
evenly spaced). The exact top 100 by inner product is the truth. Each structure is built
over the passage vectors and asked two ways:

- raw: its own top 100;
- engine: its top 100 x ANN_OVERSAMPLE rescored exactly, then the top 100 kept, which is
  what `indexer.vectors.FaissVectorIndex` does.

Reported per structure: recall@100 (mean over queries), the serialised size in bytes per
vector, build seconds and search milliseconds per query (one thread).

    .venv/bin/python bench/ann_recall.py
    .venv/bin/python bench/ann_recall.py --markdown --queries 500
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from common import DEFAULT_SCIFACT, indexed_texts, machine_note, print_table, write_corpus

from indexer.embedding import Embedder, load_embedder
from indexer.embedding_cache import EmbeddingCache, cache_file
from indexer.evaluation import EvalSet, default_cache_dir, load_eval_set, workspace_for
from indexer.settings import Settings
from indexer.store import PASSAGE_VECTORS, Manifest, current_generation, live_segments
from indexer.text import text_hash
from indexer.vectors import ANN_OVERSAMPLE, AnnConfig

DEFAULT_SQUAD = Path("/work/shared/eval/squad-dev-v1.1-part-a.json")
DEPTH = 100


def structures(rows: int) -> list[AnnConfig]:
    """The structures and search widths compared (IVF lists grow with the collection)."""
    nlist = max(16, int(4 * math.sqrt(rows)))
    return [
        *(AnnConfig("HNSW32,Flat", ef_search=ef) for ef in (64, 128, 256)),
        *(AnnConfig("HNSW32,SQ8", ef_search=ef) for ef in (64, 128, 256)),
        *(AnnConfig("HNSW16,SQ8", ef_search=ef) for ef in (128, 256)),
        *(AnnConfig(f"IVF{nlist},SQ8", nprobe=probe) for probe in (8, 16, 32, 64)),
    ]


def passage_vectors(index_dir: Path) -> np.ndarray:
    """The passage vectors of the index's live segments, in row order."""
    parts = [np.load(segment / PASSAGE_VECTORS) for segment in live_segments(index_dir)]
    return np.asarray(np.concatenate(parts), dtype=np.float32)


def cached_passage_vectors(
    eval_set: EvalSet, index_dir: Path, settings: Settings, embedder: Embedder
) -> tuple[np.ndarray, int]:
    """The set's distinct passage vectors found in its eval index's embedding cache, and how
    many distinct passages the set has (a copy is read: an indexing run may be writing)."""
    path = cache_file(index_dir, settings.model, settings.backend)
    if not path.is_file():
        return np.zeros((0, embedder.dimension), dtype=np.float32), 0
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "cache.sqlite"
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        target = sqlite3.connect(copy)
        source.backup(target)
        source.close()
        target.close()
        corpus = Path(folder) / "corpus"
        write_corpus(eval_set, corpus)
        texts, _ = indexed_texts(corpus, embedder)
        cache = EmbeddingCache(copy, embedder.dimension)
        found = cache.lookup([text_hash(text) for text in texts])
        cache.close()
    distinct = list(dict.fromkeys(text_hash(text) for text in texts))
    vectors = [found[key] for key in distinct if key in found]
    stacked = np.stack(vectors) if vectors else np.zeros((0, embedder.dimension), np.float32)
    return stacked, len(distinct)


def measure(
    config: AnnConfig, vectors: np.ndarray, queries: np.ndarray, truth: list[set[int]]
) -> list[object]:
    faiss.omp_set_num_threads(2)
    started = time.perf_counter()
    index = config.build(vectors)
    built = time.perf_counter() - started
    size = len(faiss.serialize_index(index)) / len(vectors)
    faiss.omp_set_num_threads(1)
    raw, engine, seconds = [], [], 0.0
    for query, want in zip(queries, truth, strict=True):
        started = time.perf_counter()
        _, labels = index.search(query.reshape(1, -1), DEPTH * ANN_OVERSAMPLE)
        seconds += time.perf_counter() - started
        found = labels[0][labels[0] >= 0]
        raw.append(len(set(found[:DEPTH].tolist()) & want) / DEPTH)
        rescored = found[np.argsort(-(vectors[found] @ query), kind="stable")[:DEPTH]]
        engine.append(len(set(rescored.tolist()) & want) / DEPTH)
    name = config.factory + (
        f" efSearch={config.ef_search}" if config.ef_search else f" nprobe={config.nprobe}"
    )
    return [
        name,
        f"{np.mean(raw):.4f}",
        f"{np.mean(engine):.4f}",
        f"{size:.0f}",
        f"{built:.2f}",
        f"{seconds / len(queries) * 1000:.3f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--squad", type=Path, default=DEFAULT_SQUAD)
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    parser.add_argument("--backend", default="onnx-int8")
    parser.add_argument("--queries", type=int, default=1000, help="questions per set")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    settings = Settings(backend=args.backend)
    print(machine_note())
    sets = [(args.squad, "squad", "test"), (args.scifact, "beir", "train")]
    for path, fmt, split in sets:
        eval_set = load_eval_set(path, fmt, split)  # type: ignore[arg-type]
        index_dir = workspace_for(eval_set, settings, default_cache_dir())
        generation = current_generation(index_dir)
        embedder = load_embedder(
            settings.model, settings.backend, for_queries=True, cache_dir=settings.cache_dir
        )
        if generation is not None:
            manifest = Manifest.read(generation)
            assert (manifest.model, manifest.backend) == (settings.model, settings.backend)
            vectors, note = passage_vectors(index_dir), "the index"
        else:
            vectors, passages = cached_passage_vectors(eval_set, index_dir, settings, embedder)
            note = f"the embedding cache of an index being built ({passages} passages)"
        if len(vectors) == 0:
            print(f"\n{eval_set.name}: nothing at {index_dir}; run `paracite eval` on it first")
            continue
        questions = eval_set.questions
        step = max(1, len(questions) // args.queries)
        chosen = [q.text for q in questions[::step][: args.queries]]
        queries = np.stack([embedder.embed_query(text) for text in chosen]).astype(np.float32)
        exact = queries @ vectors.T
        truth = [set(np.argsort(-row, kind="stable")[:DEPTH].tolist()) for row in exact]
        print(
            f"\n{eval_set.name}: {len(vectors)} passage vectors from {note}, "
            f"{len(queries)} questions, exact = {vectors.shape[1] * 4} bytes/vector"
        )
        rows = [measure(config, vectors, queries, truth) for config in structures(len(vectors))]
        print_table(
            ["structure", "R@100 raw", "R@100 engine", "bytes/vector", "build s", "search ms"],
            rows,
            args.markdown,
        )


if __name__ == "__main__":
    main()
