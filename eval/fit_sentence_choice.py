"""Fit the sentence-choice model (indexer/sentence_choice.py) on a SQuAD-format tuning set.

Every question is searched as `Searcher.ask` searches it (hybrid, the fused ranking); the
candidates are the sentences of its best `ANSWER_K` passages, each described by the
features of `indexer.sentence_choice`, labelled 1 when the sentence holds a gold answer
(`answer_matches`, as `paracite eval` scores answer sentences). A softmax over each
question's candidates (cross-entropy against the share of its answer-holding sentences,
light L2 on the standardised features) is fitted by Newton's method, numpy only; questions
whose candidates hold no answer take no part in the fit but count as misses.

Honesty check: the articles are split into folds (article number modulo `--folds`); the
model is fitted on the other folds and measured on each, and the held-out accuracy of the
choice (the chosen sentence holds a gold answer, before the answerability gate) is reported
beside the hand-set score's on the same questions. The final model is fitted on the whole
set and printed as the constants to paste into indexer/sentence_choice.py.

    PYTHONPATH=$PWD python eval/fit_sentence_choice.py \\
        /work/shared/eval/squad-dev-v1.1-part-a.json \\
        --cache /work/evalcache-lead --reuse-index --features /tmp/choice.npz \\
        --output eval/reports/sentence-choice.json
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tuning import choice_candidates, open_squad

from indexer.answer import has_new_answer_of_type
from indexer.evaluation import (
    answer_matches,
    default_cache_dir,
    git_state,
)
from indexer.onnx_export import cpu_description
from indexer.sentence_choice import FEATURES, passage_features

PENALTY = 1.0


@dataclass(slots=True)
class Candidates:
    """Every question's candidate sentences, one row each, question after question."""

    features: np.ndarray  # (rows, FEATURES)
    labels: np.ndarray  # 1.0 when the sentence holds a gold answer
    old: np.ndarray  # the hand-set sentence_score
    start: np.ndarray  # the first row of each question (one more than questions)
    article: np.ndarray  # each question's article number


def collect(path: Path, cache: Path, reuse_index: bool = False) -> Candidates:
    """Search every question; the features and labels of its candidate sentences."""
    eval_set, article_of, searcher = open_squad(path, cache, reuse_index=reuse_index)
    rows: list[np.ndarray] = []
    labels: list[float] = []
    old: list[float] = []
    start = [0]
    article = []
    try:
        for question in eval_set.questions:
            (gold,) = question.relevant
            article.append(article_of[gold.rpartition("#")[0]])
            fused, top, passages, context = choice_candidates(searcher, question.text)
            for position, passage in zip(top, passages, strict=True):
                first = int(fused.sentence_start[position])
                end = first + len(passage.sentences)
                dense = fused.sentence_dense[first:end]
                lexical = fused.sentence_lexical[first:end]
                score = float(fused.scores[position])
                features = passage_features(context, passage, score, dense, lexical)
                rows.append(features)
                for sentence, row in zip(passage.sentences, features, strict=True):
                    labels.append(float(answer_matches(sentence.text, question.answers)))
                    typed = context.answer_type is not None and has_new_answer_of_type(
                        context.answer_type, sentence.text, question.text
                    )
                    old.append(hand_set_score(row[0], row[1], score, typed))
            start.append(len(labels))
    finally:
        searcher.close()
    return Candidates(
        np.vstack(rows), np.array(labels), np.array(old), np.array(start), np.array(article)
    )


def hand_set_score(dense: float, lexical: float, passage: float, typed: bool) -> float:
    """The sentence score the model replaced (weights chosen by hand on the same set)."""
    return 0.6 * dense + 0.2 * lexical + 1.0 * passage + (0.1 if typed else 0.0)


def _softmax(logits: np.ndarray, start: np.ndarray) -> np.ndarray:
    top = np.maximum.reduceat(logits, start[:-1])
    counts = np.diff(start)
    e = np.exp(logits - np.repeat(top, counts))
    return e / np.repeat(np.add.reduceat(e, start[:-1]), counts)


def fit(x: np.ndarray, y: np.ndarray, start: np.ndarray, penalty: float = PENALTY) -> np.ndarray:
    """Softmax over each question's rows by Newton's method: the coefficients (no intercept).

    Questions without a positive row must be left out by the caller."""
    counts = np.diff(start)
    target = y / np.repeat(np.add.reduceat(y, start[:-1]), counts)

    def loss(w: np.ndarray) -> float:
        p = _softmax(x @ w, start)
        return float(-(target * np.log(np.maximum(p, 1e-300))).sum() + penalty / 2 * w @ w)

    w = np.zeros(x.shape[1])
    current = loss(w)
    for _ in range(100):
        p = _softmax(x @ w, start)
        gradient = x.T @ (p - target) + penalty * w
        mean = np.add.reduceat(x * p[:, None], start[:-1])  # per question: sum p x
        hessian = (x * p[:, None]).T @ x - mean.T @ mean + penalty * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        # Newton's full step can overshoot far from the optimum: halve it until it helps.
        scale = 1.0
        while (trial := loss(w - scale * step)) > current and scale > 1e-6:
            scale /= 2
        w, current = w - scale * step, trial
        if np.abs(scale * step).max() < 1e-8:
            break
    return w


def choices(scores: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The row of the best-scoring candidate of each question (first on ties)."""
    return np.array(
        [a + int(np.argmax(scores[a:b])) for a, b in zip(start[:-1], start[1:], strict=True)]
    )


@dataclass(slots=True)
class Subset:
    """Some questions of the candidates, with their rows."""

    x: np.ndarray
    y: np.ndarray
    old: np.ndarray
    start: np.ndarray


def subset(c: Candidates, questions: np.ndarray, columns: list[int]) -> Subset:
    """The rows of these questions (sorted question numbers), with these feature columns."""
    pieces = [np.arange(c.start[q], c.start[q + 1]) for q in questions]
    counts = np.array([len(p) for p in pieces])
    rows = np.concatenate(pieces)
    start = np.concatenate([[0], np.cumsum(counts)])
    return Subset(c.features[rows][:, columns], c.labels[rows], c.old[rows], start)


def with_answers(s: Subset) -> Subset:
    """Only the questions that have an answer-holding candidate."""
    keep = np.flatnonzero(np.add.reduceat(s.y, s.start[:-1]) > 0)
    pieces = [np.arange(s.start[q], s.start[q + 1]) for q in keep]
    rows = np.concatenate(pieces)
    start = np.concatenate([[0], np.cumsum([len(p) for p in pieces])])
    return Subset(s.x[rows], s.y[rows], s.old[rows], start)


def standardise(train: Subset) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales of the training rows (scale 1 for constant columns)."""
    mean = train.x.mean(axis=0)
    scale = train.x.std(axis=0)
    return mean, np.where(scale > 0, scale, 1.0)


def fit_raw(train: Subset, penalty: float = PENALTY) -> np.ndarray:
    """Coefficients on the raw features, fitted on standardised ones."""
    mean, scale = standardise(train)
    trainable = with_answers(train)
    w = fit((trainable.x - mean) / scale, trainable.y, trainable.start, penalty)
    return w / scale


def accuracy(s: Subset, scores: np.ndarray) -> float:
    """Share of questions whose best-scoring candidate holds a gold answer."""
    return float(s.y[choices(scores, s.start)].mean())


def cross_validate(c: Candidates, columns: list[int], folds: int) -> dict[str, float]:
    """Held-out choice accuracy over article folds, beside the hand-set score's."""
    held, old, count = 0.0, 0.0, 0
    for fold in range(folds):
        test_q = np.flatnonzero(c.article % folds == fold)
        train_q = np.flatnonzero(c.article % folds != fold)
        w = fit_raw(subset(c, train_q, columns))
        test = subset(c, test_q, columns)
        held += accuracy(test, test.x @ w) * len(test_q)
        old += accuracy(test, test.old) * len(test_q)
        count += len(test_q)
    return {"held_out": round(held / count, 4), "hand_set": round(old / count, 4)}


_BEFORE = ("dense", "lexical", "passage", "short_found")
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "the hand-set score's signals, refitted": ("dense", "lexical", "passage"),
    "+ short answer found": _BEFORE,
    "+ soft coverage": (*_BEFORE, "soft_coverage"),
    "+ terms new to the question, length": (*_BEFORE, "soft_coverage", "new_terms", "length"),
    "+ context coverage (with the sentence before)": (
        *_BEFORE,
        "soft_coverage",
        "context_coverage",
        "new_terms",
        "length",
    ),
    "+ passage coverage": (
        *_BEFORE,
        "passage_coverage",
        "soft_coverage",
        "context_coverage",
        "new_terms",
        "length",
    ),
    "the model (all features: + closeness)": FEATURES,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("squad", type=Path)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--features", type=Path, help="Reuse (or write) the candidates.")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument(
        "--reuse-index",
        action="store_true",
        help="Keep the cached eval index if its documents are unchanged (as `paracite eval`).",
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.features and args.features.exists():
        saved = np.load(args.features)
        c = Candidates(*(saved[name] for name in ("features", "labels", "old", "start", "article")))
    else:
        c = collect(args.squad, args.cache or default_cache_dir(), args.reuse_index)
        if args.features:
            np.savez(
                args.features,
                features=c.features,
                labels=c.labels,
                old=c.old,
                start=c.start,
                article=c.article,
            )
    questions = len(c.start) - 1
    everything = subset(c, np.arange(questions), list(range(len(FEATURES))))
    oracle = float((np.add.reduceat(c.labels, c.start[:-1]) > 0).mean())
    sets = {}
    for name, chosen in FEATURE_SETS.items():
        columns = [FEATURES.index(f) for f in chosen]
        sets[name] = cross_validate(c, columns, args.folds)
        print(name, sets[name], flush=True)
    w = fit_raw(everything)
    picked = choices(everything.x @ w, everything.start)
    old_picked = choices(everything.old, everything.start)
    report = {
        "command": f"PYTHONPATH=$PWD python eval/fit_sentence_choice.py {args.squad}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": f"{platform.machine()}, {cpu_description()}",
        "dataset": str(args.squad),
        "questions": questions,
        "candidates": int(len(c.labels)),
        "answer_among_candidates": round(oracle, 4),
        "folds": args.folds,
        "cross_validated_choice_accuracy": sets,
        "in_sample": {
            "fitted": round(accuracy(everything, everything.x @ w), 4),
            "hand_set": round(accuracy(everything, everything.old), 4),
            "same_sentence_as_hand_set": round(float((picked == old_picked).mean()), 4),
        },
        "coefficients": {n: round(float(v), 4) for n, v in zip(FEATURES, w, strict=True)},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    print("\n# paste into indexer/sentence_choice.py")
    print("COEFFICIENTS: dict[str, float] = {")
    for name, value in zip(FEATURES, w, strict=True):
        print(f'    "{name}": {value:.4f},')
    print("}")


if __name__ == "__main__":
    main()
