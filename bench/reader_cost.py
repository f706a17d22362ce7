"""What the reader (`PARACITE_READER`) costs a question, in process, against no reader.

The first `--questions` SciFact train queries are asked one at a time through
`Searcher.ask` (k=5) in four ways, interleaved question by question so that a busy moment
of a shared machine weighs on all of them alike: without the reader; `auto`, reading the
candidates of the questions whose best candidates are close and the answer of those whose
decision is close (`indexer.reader.AUTO`); `on`, reading every
question's `READER_CANDIDATES` best sentences; and `on` reading `--compare` sentences
instead (0: not measured). Reported per way: p50, p95 and mean, the p50 and the mean over
no reader's, and the share of questions the reader read.
The index is `--index`, or SciFact built as `bench/query_latency.py` builds it. With
`--squad FILE` (and the `--index` of that file's eval cache), the questions are every fifth
of a SQuAD-format file's instead.

    .venv/bin/python bench/reader_cost.py --questions 300
    .venv/bin/python bench/reader_cost.py --squad /work/shared/eval/squad-dev-v1.1-part-a.json \
        --index ~/.cache/paracite/eval/squad-dev-v1.1-part-a-...-onnx-int8 --questions 800
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

from common import add_question_options, asked_questions, machine_note, percentile, print_table
from query_latency import index_settings

import indexer.search.answering as answering
from indexer.reader import ALWAYS, AUTO, READER_CANDIDATES
from indexer.retrieval import AnswerModels, Searcher
from indexer.settings import DEFAULT_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--index", type=Path, help="an existing index (default: build SciFact)")
    add_question_options(parser)
    parser.add_argument("--backend", help="backend of the index to build")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument(
        "--compare", type=int, default=5, help="candidates read in the compared way (0: none)"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()

    eval_set, questions = asked_questions(parser, args)
    questions = questions[: args.questions]
    settings = index_settings(args, eval_set)
    models = AnswerModels.load(settings.with_overrides(reader="on"))
    plain = Searcher.from_settings(settings, models=replace(models, reader=None))
    reading = Searcher.from_settings(settings, embedder=plain.embedder, models=models)
    # name: (searcher, candidates read, when to read)
    ways = {
        "no reader": (plain, READER_CANDIDATES, ALWAYS),
        "auto (default)": (reading, READER_CANDIDATES, AUTO),
        f"on, {READER_CANDIDATES} sentences": (reading, READER_CANDIDATES, ALWAYS),
    }
    if args.compare:
        ways[f"on, {args.compare} sentences"] = (reading, args.compare, ALWAYS)
    timings: dict[str, list[float]] = {name: [] for name in ways}
    read: dict[str, int] = dict.fromkeys(ways, 0)
    try:
        for text in questions[:10]:  # warm-up
            for searcher, _, _ in ways.values():
                searcher.ask(text, 5)
        for text in questions:
            for name, (searcher, candidates, read_when) in ways.items():
                answering.READER_CANDIDATES = candidates
                searcher._answer.read_when = read_when
                started = time.perf_counter()
                result = searcher.ask(text, 5)
                timings[name].append((time.perf_counter() - started) * 1000)
                read[name] += bool(result.assessment and result.assessment.reader_logit is not None)
    finally:
        answering.READER_CANDIDATES = READER_CANDIDATES
        reading.close()
        plain.close()
    base = percentile(timings["no reader"], 50)
    base_mean = statistics.fmean(timings["no reader"])
    print(machine_note())
    print(f"# {len(questions)} {eval_set.name} questions in process, k=5, ways interleaved")
    print_table(
        ["way", "p50 ms", "p95 ms", "mean ms", "p50 over none", "mean over none", "read"],
        [
            [
                name,
                percentile(ms, 50),
                percentile(ms, 95),
                statistics.fmean(ms),
                percentile(ms, 50) / base,
                statistics.fmean(ms) / base_mean,
                read[name] / len(questions),
            ]
            for name, ms in timings.items()
        ],
        args.markdown,
    )


if __name__ == "__main__":
    main()
