"""Fit how the reader (indexer/reader.py) joins the answer choice and the answerability decision.

Every logit here is held out: the script takes two readers' updates made by
`eval/reader_experiment.py --save-adapter`, one trained on the even-numbered articles of the
SQuAD-format tuning set and one on the odd-numbered ones, and reads each question with the
reader that was not trained on its article.

1. READER_WEIGHT: each question's best `READER_CANDIDATES` sentences by choice score are
   read; the weight of the logit added to the choice score is the one of `WEIGHTS` that
   picks a sentence holding a gold answer most often.
2. READER_CLOSE_MARGIN (`PARACITE_READER=auto`): the smallest of `MARGINS` such that reading
   only the questions whose best two candidates lead each other by less than it picks a
   sentence holding a gold answer as often as reading every question.
3. The stack: every question is asked through `Searcher.ask` with the reader at that
   weight, as it is (label 1) and with its gold paragraph withheld (label 0, as in
   eval/fit_answerability.py), reading every question ('on') and reading the close ones
   only ('close'; the reader's logit on an answer it did not read is taken beside); a
   logistic regression over the answerability model's own logit and the reader's logit on
   the offered sentence of the 'on' asks gives STACK_*.
4. READER_DECISION_MARGIN: 'auto' is 'close' plus reading the answer of the questions whose
   answerability log-odds are within the margin of the minimum confidence's; the smallest
   of `DECISION_MARGINS` with which 'auto' answers no more withheld questions (where
   `COMPARE_AT` of the normal ones are answered) than reading the answer of every question.
5. READER_MIN_CONFIDENCE: the highest threshold that answers `KEEP_ANSWERED` of the normal
   questions in both 'on' and 'auto' (an ask the reader did not read keeps the answerability
   model's own confidence).

Honesty check as in fit_answerability: the weight and the stack are chosen on one half of
the articles and measured on the other, both ways.

    PYTHONPATH=$PWD python eval/fit_reader.py /work/shared/eval/squad-dev-v1.1-part-a.json \\
        --adapters EVEN.npz ODD.npz --output eval/reports/reader.json
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from fit_answerability import COMPARE_AT, KEEP_ANSWERED, choose_threshold, fit
from tuning import best_choices, open_squad, remembered

import indexer.search.answering as answering
from indexer.answerability import evidence_logit, logistic, logit
from indexer.embedding import resolve_model
from indexer.evaluation import ANSWER_K, answer_matches, default_cache_dir, git_state
from indexer.models import Assessment
from indexer.onnx_export import cpu_description, load_reader_export
from indexer.reader import ALWAYS, READER_CANDIDATES, Reader, WhenToRead
from indexer.settings import DEFAULT_MODEL

WEIGHTS = (0.0, 0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
MARGINS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, math.inf)
DECISION_MARGINS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, math.inf)
ASKED = ("on", "close")
MODES = ("on", "auto")
RATES = (COMPARE_AT, KEEP_ANSWERED)


@dataclass(frozen=True, slots=True)
class Ask:
    """One ask's answer, past the cosine gate."""

    evidence: float  # the answerability model's logit
    reader: float  # the reader's logit on the answer (read beside when the engine did not)
    read: bool  # whether the engine read it
    holds: bool  # the answer holds a gold answer


@dataclass(slots=True)
class Read:
    """One question's reading: its candidates, and its asks at the chosen weight, as it is
    (normal) and with its gold paragraph withheld, by mode."""

    article: int
    # (choice score, reader logit, holds a gold answer) of the best candidates, best first
    candidates: list[tuple[float, float, bool]]
    # by mode; None when no sentence passed the cosine gate
    normal: dict[str, Ask | None] = field(default_factory=dict)
    withheld: dict[str, Ask | None] = field(default_factory=dict)


def is_close(read: Read, below: float) -> bool:
    """Whether the reader reads this question when it reads below a choice margin."""
    scores = [score for score, _, _ in read.candidates]
    return len(scores) < 2 or scores[0] - scores[1] < below


def choice_accuracy(reads: Sequence[Read], weight: float, below: float = math.inf) -> float:
    """Share of questions whose best candidate by choice + weight x logit (read only when
    the best two lead each other by less than `below`) holds an answer."""
    right = [
        bool(r.candidates)
        and max(r.candidates, key=lambda c: c[0] + weight * c[1] * is_close(r, below))[2]
        for r in reads
    ]
    return float(np.mean(right))


def choose_margin(reads: Sequence[Read], weight: float) -> float:
    """The smallest margin that chooses as well as reading every question."""
    every = choice_accuracy(reads, weight)
    return next(m for m in MARGINS if choice_accuracy(reads, weight, m) >= every)


def ask_row(
    assessment: Assessment | None, question: str, answers: tuple[str, ...], reader: Reader
) -> Ask | None:
    if assessment is None:
        return None
    text = assessment.candidate.text
    read = assessment.reader_logit is not None
    logit = assessment.reader_logit if read else float(reader.logits(question, [text])[0])
    assert logit is not None
    return Ask(evidence_logit(assessment.evidence), logit, read, answer_matches(text, answers))


def collect(path: Path, cache: Path, adapters: Sequence[Path], work: Path) -> list[Read]:
    """Read every question's candidates, choose the weight, then ask every question twice."""
    eval_set, article_of, searcher = open_squad(path, cache)
    model = resolve_model(DEFAULT_MODEL)
    readers = [Reader(load_reader_export(model, adapter, cache)) for adapter in adapters]
    reads: list[Read] = []
    candidates_file = work / "candidates.pkl"
    try:
        if candidates_file.exists():
            kept = pickle.loads(candidates_file.read_bytes())
            reads = [Read(read.article, read.candidates) for read in kept]
        else:
            for question in eval_set.questions:
                (gold,) = question.relevant
                article = article_of[gold.rpartition("#")[0]]
                reader = readers[1 - article % 2]  # the one not trained on this article
                best = best_choices(searcher, question.text, question.answers, READER_CANDIDATES)
                logits = reader.logits(question.text, [text for text, _, _ in best])
                reads.append(
                    Read(
                        article,
                        [
                            (score, float(logit), holds)
                            for (_, score, holds), logit in zip(best, logits, strict=True)
                        ],
                    )
                )
            candidates_file.write_bytes(pickle.dumps(reads))
        weight = max(WEIGHTS, key=lambda w: choice_accuracy(reads, w))
        answering.READER_WEIGHT = weight
        when = {"on": ALWAYS, "close": WhenToRead(choose_margin(reads, weight), 0.0)}
        started = time.perf_counter()
        for read, question in zip(reads, eval_set.questions, strict=True):
            (gold,) = question.relevant
            doc_id, _, number = gold.rpartition("#")
            reader = readers[1 - read.article % 2]
            searcher._answer.reader = reader
            for mode in ASKED:
                searcher._answer.read_when = when[mode]
                normal = searcher.ask(question.text, ANSWER_K).assessment
                withheld = searcher.ask(
                    question.text, ANSWER_K, withhold=[(doc_id, int(number))]
                ).assessment
                read.normal[mode] = ask_row(normal, question.text, question.answers, reader)
                read.withheld[mode] = ask_row(withheld, question.text, question.answers, reader)
        print(f"asked {4 * len(reads)} times in {time.perf_counter() - started:.0f} s")
    finally:
        searcher.close()
    return reads


def stack_examples(reads: Sequence[Read]) -> tuple[np.ndarray, np.ndarray]:
    """The 'on' asks: (the two logits, label)."""
    rows, labels = [], []
    for read in reads:
        for ask, label in ((read.normal["on"], 1.0), (read.withheld["on"], 0.0)):
            if ask is not None:
                rows.append((ask.evidence, ask.reader))
                labels.append(label)
    return np.array(rows), np.array(labels)


@dataclass(frozen=True, slots=True)
class Stack:
    """The stacked confidence, and which asks of a mode get it."""

    intercept: float
    weights: np.ndarray  # of the answerability logit and the reader logit
    # 'auto': an unread answer is read for the decision when its answerability log-odds
    # are within `decision_margin` of `center`
    center: float = 0.0
    decision_margin: float = 0.0

    def stacked(self, ask: Ask) -> float:
        return logistic(self.intercept + float(self.weights @ np.array([ask.evidence, ask.reader])))

    def reads(self, ask: Ask, mode: str) -> bool:
        return mode == "on" or ask.read or abs(ask.evidence - self.center) < self.decision_margin

    def confidence(self, ask: Ask | None, mode: str) -> float:
        """Stacked where the reader reads in `mode`, the answerability model's own where it
        does not (-1: nothing passed the gate)."""
        if ask is None:
            return -1.0
        return self.stacked(ask) if self.reads(ask, mode) else logistic(ask.evidence)


def asks(reads: Sequence[Read], mode: str, withheld: bool = False) -> list[Ask | None]:
    """Each question's ask in `mode` ('auto' is derived from the 'close' asks)."""
    asked = "close" if mode == "auto" else mode
    return [(read.withheld if withheld else read.normal)[asked] for read in reads]


def confidences(reads: Sequence[Read], stack: Stack, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The confidence of each normal and withheld ask in `mode`."""
    return (
        np.array([stack.confidence(ask, mode) for ask in asks(reads, mode)]),
        np.array([stack.confidence(ask, mode) for ask in asks(reads, mode, withheld=True)]),
    )


def read_share(reads: Sequence[Read], stack: Stack, mode: str) -> dict[str, float]:
    """Share of the normal and withheld asks past the cosine gate that the reader read."""

    def share(given: list[Ask | None]) -> float:
        gated = [ask for ask in given if ask is not None]
        return round(float(np.mean([stack.reads(ask, mode) for ask in gated])), 4)

    return {"normal": share(asks(reads, mode)), "withheld": share(asks(reads, mode, True))}


def withheld_at(reads: Sequence[Read], stack: Stack, mode: str, rate: float) -> float:
    """Share of withheld asks answered where `rate` of the normal ones are."""
    normal, withheld = confidences(reads, stack, mode)
    return float((withheld >= np.quantile(normal, 1 - rate)).mean())


def choose_decision_margin(reads: Sequence[Read], stack: Stack) -> float:
    """The smallest margin with which 'auto' answers no more withheld questions than when
    it reads the answer of every question whose candidates it did not read."""
    every = withheld_at(reads, replace(stack, decision_margin=math.inf), "auto", COMPARE_AT)
    return next(
        margin
        for margin in DECISION_MARGINS
        if withheld_at(reads, replace(stack, decision_margin=margin), "auto", COMPARE_AT) <= every
    )


def measures(
    reads: Sequence[Read], mode: str, normal: np.ndarray, withheld: np.ndarray, threshold: float
):
    """Issue 14's measures (and issue 13's accuracy over all questions) at `threshold`."""
    answered = normal >= threshold
    correct = np.array([ask is not None and ask.holds for ask in asks(reads, mode)])
    return {
        "threshold": round(float(threshold), 4),
        "answered": round(float(answered.mean()), 4),
        "accuracy_answered": round(float(correct[answered].mean()), 4),
        "accuracy_all": round(float((correct & answered).mean()), 4),
        "accuracy_before_the_gate": round(float(correct.mean()), 4),
        "answered_withheld": round(float((withheld >= threshold).mean()), 4),
    }


@dataclass(frozen=True, slots=True)
class Choice:
    """What is chosen on a set of questions: the logit's weight, the choice margin of
    'auto', the stack (with the decision margin of 'auto') and the minimum."""

    weight: float
    margin: float
    stack: Stack
    threshold: float


def choose(reads: Sequence[Read]) -> Choice:
    """Everything fitted on `reads`. The decision margin is centred on the minimum of 'on';
    the minimum is the lower of the two modes' (each answering at least `KEEP_ANSWERED` of
    the normal questions)."""
    weight = max(WEIGHTS, key=lambda w: choice_accuracy(reads, w))
    intercept, weights = fit(*stack_examples(reads))
    stack = Stack(intercept, weights)
    minimum = choose_threshold(confidences(reads, stack, "on")[0])
    stack = replace(stack, center=logit(minimum))
    stack = replace(stack, decision_margin=choose_decision_margin(reads, stack))
    threshold = min(choose_threshold(confidences(reads, stack, mode)[0]) for mode in MODES)
    return Choice(weight, choose_margin(reads, weight), stack, threshold)


def evaluate(chosen: Choice, test: Sequence[Read]) -> dict:
    """The measures on `test` of what was chosen (on it, or on other questions). The asks
    were made at the weight and margin chosen on every question; the choice accuracies here
    follow this choice's own."""
    report: dict = {
        "reader_weight": chosen.weight,
        "close_margin": chosen.margin,
        "decision_margin": chosen.stack.decision_margin,
        "choice_accuracy": round(choice_accuracy(test, 0.0), 4),
        "choice_accuracy_with_reader": round(choice_accuracy(test, chosen.weight), 4),
        "choice_accuracy_reading_close": round(
            choice_accuracy(test, chosen.weight, chosen.margin), 4
        ),
    }
    for mode in MODES:
        normal, withheld = confidences(test, chosen.stack, mode)
        report[mode] = {
            "read": read_share(test, chosen.stack, mode),
            "at_min_confidence": measures(test, mode, normal, withheld, chosen.threshold),
            **{
                f"at_answered_{rate}": measures(
                    test, mode, normal, withheld, float(np.quantile(normal, 1 - rate))
                )
                for rate in RATES
            },
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("squad", type=Path)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument(
        "--adapters",
        type=Path,
        nargs=2,
        required=True,
        metavar=("EVEN", "ODD"),
        help="Reader updates trained on the even and on the odd articles.",
    )
    parser.add_argument("--work", type=Path, required=True, help="Folder for what was read.")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    reads = remembered(
        args.work / "reads.pkl",
        lambda: collect(args.squad, args.cache or default_cache_dir(), args.adapters, args.work),
    )
    halves = ([r for r in reads if r.article % 2 == 0], [r for r in reads if r.article % 2 == 1])
    chosen = choose(reads)
    report = {
        "command": f"PYTHONPATH=$PWD python eval/fit_reader.py {args.squad}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": cpu_description(),
        "questions": len(reads),
        "stack": {
            "intercept": round(chosen.stack.intercept, 4),
            "evidence": round(float(chosen.stack.weights[0]), 4),
            "reader": round(float(chosen.stack.weights[1]), 4),
        },
        "min_confidence": chosen.threshold,
        **evaluate(chosen, reads),
        "split_halves": {
            "chosen on even articles, measured on odd": evaluate(choose(halves[0]), halves[1]),
            "chosen on odd articles, measured on even": evaluate(choose(halves[1]), halves[0]),
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    print("\n# paste into indexer/reader.py")
    print(f"READER_WEIGHT = {chosen.weight}")
    print(f"READER_CLOSE_MARGIN = {chosen.margin}")
    print(f"READER_DECISION_MARGIN = {chosen.stack.decision_margin}")
    print(f"STACK_INTERCEPT = {chosen.stack.intercept:.4f}")
    print(f"STACK_EVIDENCE = {chosen.stack.weights[0]:.4f}")
    print(f"STACK_READER = {chosen.stack.weights[1]:.4f}")
    print(f"READER_MIN_CONFIDENCE = {chosen.threshold}")


if __name__ == "__main__":
    main()
