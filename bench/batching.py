"""How the size of each ONNX run changes embedding speed: one pass over the same texts per
batching, passages and sentences apart.

The texts are those the indexer embeds for the first `--docs` SciFact abstracts (passages
with their title, and their sentences), longest first as the indexer sends them. Each
batching caps a run at `--batch-size` texts and at most N tokens (rows x padded width; 0: no
token cap, the count alone). Figures are the best of `--repeats` passes, in tokens per second
(tokens without the special ones). Run it on an idle machine.

`--sessions` also compares how the cores are used: `copies` (the default for indexing: one
one-core copy of the graph per core, taking turns at the batches) against `one` (a single
session whose every run is spread over all the cores).

    .venv/bin/python bench/batching.py --budgets 0,256,512,1024,2048,4096
    .venv/bin/python bench/batching.py --budgets 512 --sessions copies,one --docs 300
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import DEFAULT_SCIFACT, indexed_texts, machine_note, print_table, scifact, write_corpus

from indexer.embedding import Embedder, load_embedder, resolve_model
from indexer.encoders import OnnxEncoder, usable_cores
from indexer.onnx_export import load_onnx_encoder
from indexer.settings import DEFAULT_MODEL, Settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="BEIR SciFact folder")
    parser.add_argument("--docs", type=int, default=150, help="SciFact abstracts (default 150)")
    parser.add_argument("--backend", default="onnx-int8", choices=["onnx", "onnx-int8"])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--batch-size", type=int, default=64, help="most texts per run")
    parser.add_argument(
        "--budgets", default="0,256,512,1024,2048,4096", help="comma-separated token caps"
    )
    parser.add_argument(
        "--sessions",
        default="copies",
        help="comma-separated: copies (one one-core graph per core), one (one session on all)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="passes per figure (best)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    budgets = [int(budget) for budget in args.budgets.split(",") if budget.strip()]

    embedder = load_embedder(args.model, args.backend)
    layouts = {"copies": embedder}
    if "one" in args.sessions.split(","):
        single = load_onnx_encoder(
            resolve_model(args.model),
            Settings().cache_dir,
            quantized=args.backend == "onnx-int8",
            label=Path(args.model).name,
            threads=usable_cores(),
        )
        layouts["one"] = Embedder(args.model, args.backend, single)
    layouts = {name: layouts[name] for name in args.sessions.split(",") if name in layouts}
    with tempfile.TemporaryDirectory(prefix="paracite-bench-") as folder:
        write_corpus(scifact(args.scifact), Path(folder), args.docs)
        passages, sentences = indexed_texts(Path(folder), embedder)
    kinds = {"passages": passages, "sentences": sentences}
    tokens = {name: sum(embedder.count_tokens(texts)) for name, texts in kinds.items()}
    print(f"# {len(passages)} passages, {len(sentences)} sentences, {tokens}", flush=True)
    runs = [(layout, budget) for layout in layouts for budget in budgets]
    best = {(name, run): float("inf") for name in kinds for run in runs}
    for each in layouts.values():
        each.embed(passages[:32], args.batch_size)  # warm-up
    for _ in range(args.repeats):  # interleaved, so that load changes hit them alike
        for layout, budget in runs:
            encoder = layouts[layout].encoder
            assert isinstance(encoder, OnnxEncoder)
            encoder.batch_tokens = budget or 1 << 30
            for name, texts in kinds.items():
                started = time.perf_counter()
                layouts[layout].embed(texts, args.batch_size)
                seconds = time.perf_counter() - started
                best[name, (layout, budget)] = min(best[name, (layout, budget)], seconds)
    print(machine_note())
    rows = [
        [
            layout,
            budget or "none",
            *(tokens[name] / best[name, (layout, budget)] for name in kinds),
            sum(best[name, (layout, budget)] for name in kinds),
        ]
        for layout, budget in runs
    ]
    print_table(
        ["sessions", "token cap per run", "passage tokens/s", "sentence tokens/s", "both, s"],
        rows,
        args.markdown,
    )


if __name__ == "__main__":
    main()
