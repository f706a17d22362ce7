"""BM25's best rows found by pruning (MaxScore) against scoring every matching row.

Over an existing index, each question's 200 best passages and 200 best sentences by BM25
(what the candidate stage asks for) are found both ways; the script checks that the scores
are the same bit for bit and prints the CPU time of each way by how many postings the
question's terms hold. Questions under PRUNE_FROM_POSTINGS postings are answered by
scoring every posting in the engine; here both ways are timed for every question.

    .venv/bin/python bench/lexical_pruning.py --index ~/.cache/paracite/eval/scifact-...
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import DEFAULT_SCIFACT, machine_note, print_table, scifact

from indexer import lexical
from indexer.lexical import LexicalIndex
from indexer.segments import SegmentedIndex
from indexer.store import Manifest, require_generation
from indexer.text import lexical_terms

BUCKETS = (0, 4_000, 16_000, 32_000, 64_000, 128_000, 256_000, 1_000_000, 10**12)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--index", type=Path, required=True, help="an index folder")
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="questions from")
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--depth", type=int, default=200, help="best rows asked for")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    print(machine_note(), flush=True)
    lexical.PRUNE_FROM_POSTINGS = 0  # time the pruning itself on every question
    questions = [q.text for q in scifact(args.scifact).questions[: args.questions]]
    generation = require_generation(args.index)
    index = SegmentedIndex.open(generation, Manifest.read(generation), ann_min_passages=0)
    try:
        rows = []
        for name, structure in (("passages", index.lexical), ("sentences", index.sentence_lexical)):
            timed = [_timed(structure, lexical_terms(q), args.depth) for q in questions]
            rows.extend(_buckets(name, timed))
    finally:
        index.close()
    headers = ["rows", "postings", "questions", "pruned CPU ms p50", "every row CPU ms p50"]
    print_table(headers, rows, args.markdown)


def _timed(structure: LexicalIndex, terms: list[str], depth: int) -> tuple[int, float, float]:
    """The question's postings, and the CPU ms of its best rows pruned and by every row."""
    started = time.process_time()
    query = structure.match(terms)
    pruned = query.top(depth)
    pruned_ms = (time.process_time() - started) * 1000
    started = time.process_time()
    every = structure.match(terms).every().top(depth)
    every_ms = (time.process_time() - started) * 1000
    if not np.array_equal(pruned.scores, every.scores):
        raise SystemExit(f"pruned and full scores differ for {terms}")
    return query.postings, pruned_ms, every_ms


def _buckets(name: str, timed: list[tuple[int, float, float]]) -> list[list[object]]:
    postings = np.array([t[0] for t in timed])
    rows: list[list[object]] = []
    for low, high in zip(BUCKETS, BUCKETS[1:], strict=False):
        inside = [t for t, p in zip(timed, postings, strict=True) if low <= p < high]
        if inside:
            pruned = float(np.median([t[1] for t in inside]))
            every = float(np.median([t[2] for t in inside]))
            span = f"{low:,}-{high:,}" if high < 10**12 else f"{low:,}+"
            rows.append([name, span, len(inside), round(pruned, 2), round(every, 2)])
    return rows


if __name__ == "__main__":
    main()
