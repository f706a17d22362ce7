"""Embedding speed per backend: paragraphs/s and one query's latency, and agreement with torch.

Texts are what the indexer embeds: the passages of the seed documents and of the first
`--sample` SciFact abstracts (title + paragraph, chunked as the indexer chunks them). Figures
are medians over `--repeats` runs, after a warm-up. Run it on an idle machine.

    .venv/bin/python bench/embedding_speed.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (
    DEFAULT_SCIFACT,
    DEFAULT_SEEDS,
    indexed_texts,
    machine_note,
    median,
    parse_backends,
    print_table,
    scifact,
    write_corpus,
)

from indexer.embedding import load_embedder
from indexer.settings import DEFAULT_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seeds", type=Path, default=DEFAULT_SEEDS, help="seed documents folder")
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="BEIR SciFact folder")
    parser.add_argument("--sample", type=int, default=200, help="SciFact abstracts (default 200)")
    parser.add_argument("--backends", default="torch,onnx,onnx-int8", help="comma-separated")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--queries", type=int, default=100, help="SciFact queries timed one by one")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    backends = parse_backends(args.backends)

    eval_set = scifact(args.scifact)
    queries = [question.text for question in eval_set.questions[: args.queries]]
    loaded = {}
    for backend in backends:
        started = time.perf_counter()
        loaded[backend] = load_embedder(args.model, backend)
        print(f"# loaded {backend} in {time.perf_counter() - started:.1f} s", flush=True)
    first = loaded[backends[0]]
    seeds, _ = indexed_texts(args.seeds, first)
    with tempfile.TemporaryDirectory(prefix="paracite-bench-") as folder:
        write_corpus(eval_set, Path(folder), args.sample)
        sample, _ = indexed_texts(Path(folder), first)
    print(
        f"# {len(seeds)} seed passages, {len(sample)} SciFact passages "
        f"({args.sample} abstracts), {len(queries)} queries",
        flush=True,
    )

    rows = []
    reference = None
    for backend, embedder in loaded.items():
        embedder.embed(seeds[:16], args.batch_size)
        for query in queries[:5]:
            embedder.embed_query(query)
        figures = {}
        vectors: dict[str, np.ndarray] = {}
        for name, texts in (("seeds", seeds), ("scifact", sample)):
            rates = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                vectors[name] = embedder.embed(texts, args.batch_size)
                rates.append(len(texts) / (time.perf_counter() - started))
            figures[name] = median(rates)
        runs = []
        for _ in range(args.repeats):
            times = []
            for query in queries:
                started = time.perf_counter()
                embedder.embed_query(query)
                times.append((time.perf_counter() - started) * 1000)
            runs.append(median(times))
        all_vectors = np.concatenate([vectors["seeds"], vectors["scifact"]])
        if reference is None and backend == "torch":
            reference = all_vectors
        if reference is not None:
            cosines = (all_vectors * reference).sum(axis=1)
            agreement = (float(cosines.min()), float(cosines.mean()))
        else:
            agreement = (float("nan"), float("nan"))
        rows.append(
            [
                backend,
                figures["seeds"],
                figures["scifact"],
                median(runs),
                f"{agreement[0]:.4f}" if agreement[0] == agreement[0] else "-",
                f"{agreement[1]:.4f}" if agreement[1] == agreement[1] else "-",
            ]
        )
        print(f"# {backend} done", flush=True)
    print(machine_note())
    print_table(
        [
            "backend",
            "seed passages/s",
            "SciFact passages/s",
            "query ms (p50)",
            "cos vs torch (min)",
            "cos vs torch (mean)",
        ],
        rows,
        args.markdown,
    )


if __name__ == "__main__":
    main()
