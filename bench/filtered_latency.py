"""Question latency with and without filters, in process, on one index.

The same questions are asked unfiltered, within one document (a small scope, scored
exactly), within one format that covers the whole collection (the largest scope), and
within the folder holding the most documents when the collection has folders. Each
question is asked once per way after a warm-up; reported: p50 and p95 in ms.

    .venv/bin/python bench/filtered_latency.py --index ~/.cache/paracite/eval/scifact-...-onnx-int8
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path

from common import DEFAULT_SCIFACT, machine_note, percentile, print_table

from indexer.evaluation import load_eval_set
from indexer.retrieval import Scope, Searcher


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--index", type=Path, required=True, help="an existing index")
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="questions from")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()

    questions = [q.text for q in load_eval_set(args.scifact, "beir", "train").questions]
    questions = questions[: args.questions]
    searcher = Searcher.open(args.index)
    try:
        documents = searcher.documents()
        rng = random.Random(args.seed)
        formats = Counter(info.format for info in documents)
        folders = Counter(
            info.doc_id.rpartition("/")[0] for info in documents if "/" in info.doc_id
        )
        common_format, format_count = formats.most_common(1)[0]
        ways: dict[str, list[Scope | None]] = {
            "unfiltered": [None] * len(questions),
            "one document": [Scope(doc=rng.choice(documents).doc_id) for _ in questions],
            f"format {common_format} ({format_count} docs)": [Scope(format=common_format)]
            * len(questions),
        }
        if folders:
            folder, count = folders.most_common(1)[0]
            ways[f"folder {folder}/ ({count} docs)"] = [Scope(folder=folder)] * len(questions)
        for question in questions[:10]:  # warm-up
            searcher.ask(question)
        rows = []
        for name, scopes in ways.items():
            latencies = []
            for question, scope in zip(questions, scopes, strict=True):
                started = time.perf_counter()
                searcher.ask(question, scope=scope)
                latencies.append((time.perf_counter() - started) * 1000)
            rows.append(
                [name, len(latencies), percentile(latencies, 50), percentile(latencies, 95)]
            )
        passages = searcher.stats().passages
        uses_ann = searcher.uses_ann
    finally:
        searcher.close()
    if args.json:
        keys = ("way", "questions", "p50_ms", "p95_ms")
        print(json.dumps([dict(zip(keys, row, strict=True)) for row in rows], indent=2))
        return
    print(machine_note())
    print(f"# {args.index}: {passages} passages, {'ANN' if uses_ann else 'exact'} search")
    print_table(["scope", "questions", "p50 ms", "p95 ms"], rows, args.markdown)


if __name__ == "__main__":
    main()
