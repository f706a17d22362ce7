"""How the size of each ONNX run changes embedding speed: one pass over the same texts per
batching, passages and sentences apart.

The texts are those the indexer embeds for the first `--docs` SciFact abstracts (passages
with their title, and their sentences), longest first as the indexer sends them. Each
batching caps a run at `--batch-size` texts and at most N tokens (rows x padded width; 0: no
token cap, the count alone). Figures are the best of `--repeats` passes, in tokens per second
(tokens without the special ones). Run it on an idle machine.

    .venv/bin/python bench/batching.py --budgets 0,256,512,1024,2048,4096
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import DEFAULT_SCIFACT, indexed_texts, machine_note, print_table, scifact, write_corpus

from indexer.embedding import load_embedder
from indexer.encoders import OnnxEncoder
from indexer.settings import DEFAULT_MODEL


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
    parser.add_argument("--repeats", type=int, default=3, help="passes per figure (best)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    budgets = [int(budget) for budget in args.budgets.split(",") if budget.strip()]

    embedder = load_embedder(args.model, args.backend)
    encoder = embedder.encoder
    assert isinstance(encoder, OnnxEncoder)
    with tempfile.TemporaryDirectory(prefix="paracite-bench-") as folder:
        write_corpus(scifact(args.scifact), Path(folder), args.docs)
        passages, sentences = indexed_texts(Path(folder), embedder)
    kinds = {"passages": passages, "sentences": sentences}
    tokens = {name: sum(embedder.count_tokens(texts)) for name, texts in kinds.items()}
    print(f"# {len(passages)} passages, {len(sentences)} sentences, {tokens}", flush=True)
    embedder.embed(passages[:32], args.batch_size)  # warm-up
    best = {(name, budget): float("inf") for name in kinds for budget in budgets}
    for _ in range(args.repeats):  # budgets interleaved, so that load changes hit them alike
        for budget in budgets:
            encoder.batch_tokens = budget or 1 << 30
            for name, texts in kinds.items():
                started = time.perf_counter()
                embedder.embed(texts, args.batch_size)
                seconds = time.perf_counter() - started
                best[name, budget] = min(best[name, budget], seconds)
    print(machine_note())
    rows = [
        [
            budget or "none",
            *(tokens[name] / best[name, budget] for name in kinds),
            sum(best[name, budget] for name in kinds),
        ]
        for budget in budgets
    ]
    print_table(
        ["token cap per run", "passage tokens/s", "sentence tokens/s", "both, s"],
        rows,
        args.markdown,
    )


if __name__ == "__main__":
    main()
