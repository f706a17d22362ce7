"""What the reader (`PARACITE_READER=on`) costs a question, in process, against no reader.

The first `--questions` SciFact train queries are asked one at a time through
`Searcher.ask` (k=5) in three ways, interleaved question by question so that a busy moment
of a shared machine weighs on all three alike: without the reader, with it reading its
`READER_CANDIDATES` best sentences (the shipped number), and with it reading `--compare`
sentences instead. Reported: p50 and p95 per way, and each way's p50 over the no-reader p50.
The index is `--index`, or SciFact built as `bench/query_latency.py` builds it.

    .venv/bin/python bench/reader_cost.py --questions 300
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from common import DEFAULT_SCIFACT, machine_note, percentile, print_table, scifact
from query_latency import index_settings

import indexer.search.answering as answering
from indexer.reader import READER_CANDIDATES
from indexer.retrieval import AnswerModels, Searcher
from indexer.settings import DEFAULT_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--index", type=Path, help="an existing index (default: build SciFact)")
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="BEIR SciFact folder")
    parser.add_argument("--backend", help="backend of the index to build")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument(
        "--compare", type=int, default=5, help="candidates read in the compared way"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()

    eval_set = scifact(args.scifact)
    questions = [question.text for question in eval_set.questions][: args.questions]
    settings = index_settings(args, eval_set)
    models = AnswerModels.load(settings.with_overrides(reader=True))
    plain = Searcher.from_settings(settings, models=replace(models, reader=None))
    reading = Searcher.from_settings(settings, embedder=plain.embedder, models=models)
    ways = {
        "no reader": (plain, READER_CANDIDATES),
        f"reader, {READER_CANDIDATES} sentences (shipped)": (reading, READER_CANDIDATES),
        f"reader, {args.compare} sentences": (reading, args.compare),
    }
    timings: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for text in questions[:10]:  # warm-up
            for searcher, _ in ways.values():
                searcher.ask(text, 5)
        for text in questions:
            for name, (searcher, candidates) in ways.items():
                answering.READER_CANDIDATES = candidates
                started = time.perf_counter()
                searcher.ask(text, 5)
                timings[name].append((time.perf_counter() - started) * 1000)
    finally:
        answering.READER_CANDIDATES = READER_CANDIDATES
        reading.close()
        plain.close()
    base = percentile(timings["no reader"], 50)
    print(machine_note())
    print(f"# {len(questions)} SciFact questions in process, k=5, ways interleaved")
    print_table(
        ["way", "p50 ms", "p95 ms", "p50 over no reader"],
        [
            [name, percentile(ms, 50), percentile(ms, 95), percentile(ms, 50) / base]
            for name, ms in timings.items()
        ],
        args.markdown,
    )


if __name__ == "__main__":
    main()
