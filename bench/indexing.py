"""Indexing throughput on SciFact per backend (and way of embedding sentences), and the
re-index time of an unchanged corpus.

For each backend the corpus (the first `--docs` abstracts, or `--torch-docs` for torch, which
is slow) is written as files and indexed from scratch into a fresh folder with an empty
embedding cache; throughput counts passages per second of the whole run (reading, chunking,
embedding passages and their sentences, writing), and also vectors (passages + sentences)
per second; with `--sentence-vectors in-context` sentences are pooled from their passage's
run instead of embedded on their own, with `--passage-vectors pooled` passages are pooled
from their sentences' vectors instead. The model is loaded before the clock starts.

Before each run the model's raw throughput is measured on the same texts: one pass of the
passages alone through the same backend (longest first, so batches hold texts of similar
length; nothing else running), in tokens per second and abstracts per second. The model
first embeds a few of the passages (so that no pass pays for its first runs), and the pass
is timed `--raw-passes` times, of which the median counts: one pass of a few seconds moves
by 20% or more from one run to the next on a shared machine, the indexing run far less. "of raw" is
indexing abstracts/s over raw abstracts/s: how close indexing gets to the model's speed.
"of model time" compares with the model's time for everything the run gives it: the raw
pass over the passages plus, for standalone sentences, a raw pass over the distinct
sentences (for pooled or joined passages it is left blank). Indexing can be no faster than that
model time, so with standalone sentences "of raw" cannot go above the passages' share of it.
Then the
same corpus is indexed again twice, timed with the model load included, as `paracite index`
would run: once with the files untouched, once after rewriting every file with the same
content.

    .venv/bin/python bench/indexing.py                      # full SciFact, torch on 1,000
    .venv/bin/python bench/indexing.py --backends onnx-int8 --docs 1000
    .venv/bin/python bench/indexing.py --backends onnx-int8 --docs 1000 \
        --sentence-vectors standalone,in-context --passage-vectors standalone,pooled
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import get_args

from common import (
    DEFAULT_SCIFACT,
    indexed_texts,
    machine_note,
    parse_backends,
    print_table,
    scifact,
    write_corpus,
)

from indexer.build import build_index
from indexer.embedding import Embedder, load_embedder
from indexer.settings import DEFAULT_MODEL, PassageVectors, SentenceVectors, Settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="BEIR SciFact folder")
    parser.add_argument("--backends", default="onnx-int8,onnx,torch", help="comma-separated")
    parser.add_argument("--docs", type=int, default=0, help="abstracts to index (0 = all 5,183)")
    parser.add_argument(
        "--torch-docs", type=int, default=1000, help="abstracts for torch (0 = as --docs)"
    )
    parser.add_argument(
        "--sentence-vectors",
        default="standalone",
        help="comma-separated: standalone, in-context (one run each per backend)",
    )
    parser.add_argument(
        "--passage-vectors",
        default="standalone",
        help="comma-separated: standalone, pooled (pooled only with standalone sentences)",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--raw-passes", type=int, default=3, help="timed raw passes (the median counts)"
    )
    parser.add_argument(
        "--work", type=Path, help="folder for corpus copies and indexes (default: a temp folder)"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    backends = parse_backends(args.backends)
    ways = [way.strip() for way in args.sentence_vectors.split(",") if way.strip()]
    if not ways or any(way not in get_args(SentenceVectors) for way in ways):
        parser.error(f"--sentence-vectors takes {', '.join(get_args(SentenceVectors))}")
    pooling = [way.strip() for way in args.passage_vectors.split(",") if way.strip()]
    if not pooling or any(way not in get_args(PassageVectors) for way in pooling):
        parser.error(f"--passage-vectors takes {', '.join(get_args(PassageVectors))}")
    # Pooled passages need standalone sentences (in context, the passage is run anyway).
    combinations = [
        (sentences, passages)
        for sentences in ways
        for passages in pooling
        if passages == "standalone" or sentences == "standalone"
    ]
    eval_set = scifact(args.scifact)

    rows = []
    with tempfile.TemporaryDirectory(prefix="paracite-bench-", dir=args.work) as work:
        for backend, (way, passages) in [(b, c) for b in backends for c in combinations]:
            name = f"{backend}, {way}" + (
                f", {passages} passages" if passages != "standalone" else ""
            )
            limit = args.torch_docs if backend == "torch" and args.torch_docs else args.docs
            corpus = Path(work) / f"corpus-{backend}-{way}-{passages}"
            documents = write_corpus(eval_set, corpus, limit or None)
            settings = Settings(
                index=Path(work) / f"index-{backend}-{way}-{passages}",
                model=args.model,
                backend=backend,
                sentence_vectors=way,
                passage_vectors=passages,
                batch_size=args.batch_size,
            )
            embedder = load_embedder(args.model, backend)
            if passages == "joined":
                # Loads the joined graphs, exporting them on their first use ever (seconds
                # that belong to no indexing run), as the model is loaded before the clock.
                embedder.joins_pieces  # noqa: B018
            print(f"# {name}: raw model pass over {documents} abstracts ...", flush=True)
            passage_texts, sentence_texts = indexed_texts(corpus, embedder)
            tokens = sum(embedder.count_tokens(passage_texts))
            embedder.embed(passage_texts[: 4 * args.batch_size], args.batch_size)  # warm-up
            raw_seconds = embed_seconds(embedder, passage_texts, args.batch_size, args.raw_passes)
            model_seconds: float | None = raw_seconds
            if way == "standalone" and passages == "standalone":
                distinct = sorted(set(sentence_texts) - set(passage_texts))
                sentence_seconds = embed_seconds(
                    embedder, distinct, args.batch_size, args.raw_passes
                )
                model_seconds = raw_seconds + sentence_seconds
            elif passages != "standalone":
                model_seconds = None
            print(f"# {name}: indexing {documents} abstracts ...", flush=True)
            started = time.perf_counter()
            report = build_index(corpus, settings, embedder=embedder)
            seconds = time.perf_counter() - started
            passage_count = sum(f.passages for f in report.files)
            del embedder

            started = time.perf_counter()
            again = build_index(corpus, settings)
            untouched = time.perf_counter() - started
            assert again.up_to_date and again.embedded == 0, "unchanged corpus was re-indexed"

            write_corpus(eval_set, corpus, limit or None)  # same content, new mtimes
            started = time.perf_counter()
            rewritten = build_index(corpus, settings)
            touched = time.perf_counter() - started
            assert rewritten.embedded == 0, "unchanged text was embedded again"

            rows.append(
                [
                    name,
                    documents,
                    passage_count,
                    report.embedded,
                    seconds,
                    documents / seconds,
                    passage_count / seconds,
                    report.embedded / seconds,
                    tokens / raw_seconds,
                    documents / raw_seconds,
                    raw_seconds / seconds,
                    float("nan") if model_seconds is None else model_seconds / seconds,
                    untouched,
                    touched,
                ]
            )
            print(f"# {name}: {seconds:.1f} s", flush=True)
    print(machine_note())
    print_table(
        [
            "backend, sentences",
            "abstracts",
            "passages",
            "vectors",
            "index s",
            "abstracts/s",
            "passages/s",
            "vectors/s",
            "raw tokens/s",
            "raw abstracts/s",
            "of raw",
            "of model time",
            "re-index s (untouched)",
            "re-index s (rewritten)",
        ],
        rows,
        args.markdown,
    )


def embed_seconds(embedder: Embedder, texts: list[str], batch_size: int, passes: int) -> float:
    """The median wall time of `passes` passes of `texts` through the model."""
    seconds = []
    for _ in range(max(passes, 1)):
        started = time.perf_counter()
        embedder.embed(texts, batch_size)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


if __name__ == "__main__":
    main()
