"""Experiment: do other fusion weights rank SQuAD paragraphs better, held out?

Every question of a SQuAD-format set is fused once as `Searcher.ask` fuses it (hybrid); the
signals of its candidates are kept, so that paragraph R@1 can be recomputed for any
`FusionWeights` without searching again. The passage weight stays 0.4 (only the ratios
matter); the sentence, lexical and sentence-lexical weights run over a grid. The weights
are chosen on one half of the articles (alternating) and read on the other, both ways,
against the shipped weights on the same half.

With `--scifact FOLDER`, SciFact's train queries are fused too, and nDCG@10 over documents
(each ranked at its best passage, as `paracite eval` ranks them) is recomputed for each
weighting: the weights are then chosen for SciFact among those that keep SQuAD's R@1 at
least the shipped weights', on half of the SQuAD articles and half of the SciFact queries
(alternating), and read on the other halves.

    PYTHONPATH=$PWD python eval/fusion_weights.py /work/shared/eval/squad-dev-v1.1-part-a.json \\
        --cache CACHE [--passage-vectors joined] [--scifact /work/shared/eval/scifact]
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tuning import fuse_as_asked, open_squad

from indexer.evaluation import (
    build_eval_index,
    default_cache_dir,
    load_eval_set,
    ndcg_at,
    workspace_for,
)
from indexer.retrieval import Searcher
from indexer.search.fusion import FusionWeights
from indexer.search.types import Fused
from indexer.settings import Settings

GRID = {
    "sentence": np.round(np.arange(0.15, 0.56, 0.05), 2),
    "lexical": np.round(np.arange(0.10, 0.36, 0.05), 2),
    "sentence_lexical": np.round(np.arange(0.10, 0.56, 0.10), 2),
}


@dataclass(slots=True)
class Signals:
    """A question's candidates' signals (the fields of `Fused`), to fuse at any weights."""

    sentence_start: np.ndarray
    sentence_dense: np.ndarray
    sentence_lexical: np.ndarray
    passage_dense: np.ndarray
    passage_lexical: np.ndarray

    @classmethod
    def of(cls, fused: Fused) -> Signals:
        return cls(
            fused.sentence_start,
            fused.sentence_dense,
            fused.sentence_lexical,
            fused.passage_dense,
            fused.passage_lexical,
        )

    def scores(self, weights: FusionWeights) -> np.ndarray:
        """Each candidate's fused score at `weights`, as `FusionStage` fuses them."""
        sentence = self.sentence_dense + weights.sentence_lexical * self.sentence_lexical
        best = np.maximum.reduceat(sentence, self.sentence_start[:-1])
        return (
            weights.passage * self.passage_dense
            + weights.lexical * self.passage_lexical
            + weights.sentence * best
        )


@dataclass(slots=True)
class Fusion:
    """One SQuAD question's candidates, their signals and its gold paragraph's rows."""

    article: int
    rows: np.ndarray
    signals: Signals
    gold: set[int]

    def top_is_gold(self, weights: FusionWeights) -> bool:
        if not len(self.rows):
            return False
        return int(self.rows[int(np.argmax(self.signals.scores(weights)))]) in self.gold


def collect(path: Path, cache: Path, settings: Settings) -> list[Fusion]:
    eval_set, article_of, searcher = open_squad(path, cache, settings)
    fusions = []
    try:
        for question in eval_set.questions:
            (gold,) = question.relevant
            doc_id, _, number = gold.rpartition("#")
            ranges = searcher._store.paragraph_ranges([(doc_id, int(number))])
            _, fused = fuse_as_asked(searcher, question.text)
            fusions.append(
                Fusion(
                    article_of[doc_id],
                    fused.rows,
                    Signals.of(fused),
                    {row for start, end in ranges for row in range(int(start), int(end))},
                )
            )
    finally:
        searcher.close()
    return fusions


def recall_at_1(fusions: list[Fusion], weights: FusionWeights) -> float:
    return float(np.mean([f.top_is_gold(weights) for f in fusions]))


@dataclass(slots=True)
class Ranked:
    """One BEIR query's candidates: their documents and signals, and the graded qrels."""

    doc_ids: np.ndarray
    signals: Signals
    relevant: dict[str, int]

    def ndcg_at_10(self, weights: FusionWeights) -> float:
        if not len(self.doc_ids):
            return 0.0
        order = np.argsort(-self.signals.scores(weights), kind="stable")
        ranking = list(dict.fromkeys(self.doc_ids[order].tolist()))
        return ndcg_at(ranking, self.relevant, 10)


def collect_beir(folder: Path, cache: Path, settings: Settings) -> list[Ranked]:
    eval_set = load_eval_set(folder, "beir", "train")
    settings = settings.with_overrides(index=workspace_for(eval_set, settings, cache))
    build_eval_index(eval_set, settings, reuse_index=True)
    searcher = Searcher.open(settings.index)
    ranked = []
    try:
        for question in eval_set.questions:
            _, fused = fuse_as_asked(searcher, question.text)
            ranked.append(
                Ranked(
                    np.array(searcher._store.passage_doc_ids(fused.rows.tolist()), dtype=object),
                    Signals.of(fused),
                    dict(question.relevant),
                )
            )
    finally:
        searcher.close()
    return ranked


def ndcg_at_10(queries: list[Ranked], weights: FusionWeights) -> float:
    return float(np.mean([query.ndcg_at_10(weights) for query in queries]))


def for_both(
    fusions: list[Fusion], queries: list[Ranked], grid: list[FusionWeights]
) -> dict[str, object]:
    """Weights for SciFact that keep SQuAD's R@1, in sample and chosen on halves."""
    shipped = FusionWeights()

    def keeping(fitted: list[Fusion]) -> list[FusionWeights]:
        floor = recall_at_1(fitted, shipped)
        return [w for w in grid if recall_at_1(fitted, w) >= floor]

    def measured(weights: FusionWeights, squad: list[Fusion], beir: list[Ranked]) -> list[float]:
        return [round(recall_at_1(squad, weights), 4), round(ndcg_at_10(beir, weights), 4)]

    best = max(keeping(fusions), key=lambda w: ndcg_at_10(queries, w))
    report: dict[str, object] = {
        "shipped (R@1, nDCG@10)": measured(shipped, fusions, queries),
        "best in sample": measured(best, fusions, queries),
        "best_weights": [best.sentence, best.lexical, best.sentence_lexical],
    }
    for half in (0, 1):
        squad_fit = [f for f in fusions if f.article % 2 == half]
        squad_test = [f for f in fusions if f.article % 2 != half]
        chosen = max(keeping(squad_fit), key=lambda w: ndcg_at_10(queries[half::2], w))
        report[f"chosen on half {half}"] = {
            "weights": [chosen.sentence, chosen.lexical, chosen.sentence_lexical],
            "held_out": measured(chosen, squad_test, queries[1 - half :: 2]),
            "held_out_shipped": measured(shipped, squad_test, queries[1 - half :: 2]),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("squad", type=Path)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--passage-vectors", default=None)
    parser.add_argument("--scifact", type=Path, help="also rank this BEIR folder's train queries")
    args = parser.parse_args()
    settings = Settings().with_overrides(passage_vectors=args.passage_vectors)
    fusions = collect(args.squad, args.cache or default_cache_dir(), settings)
    shipped = FusionWeights()
    grid = [
        FusionWeights(shipped.passage, float(s), float(lex), float(sl))
        for s, lex, sl in itertools.product(*GRID.values())
    ]
    best = max(grid, key=lambda w: recall_at_1(fusions, w))
    report: dict[str, object] = {}
    report["all"] = {
        "shipped": round(recall_at_1(fusions, shipped), 4),
        "best_in_sample": round(recall_at_1(fusions, best), 4),
        "best_weights": [best.sentence, best.lexical, best.sentence_lexical],
    }
    for half in (0, 1):
        fitted = [f for f in fusions if f.article % 2 == half]
        measured = [f for f in fusions if f.article % 2 != half]
        chosen = max(grid, key=lambda w: recall_at_1(fitted, w))
        report[f"chosen on half {half}"] = {
            "weights": [chosen.sentence, chosen.lexical, chosen.sentence_lexical],
            "held_out": round(recall_at_1(measured, chosen), 4),
            "held_out_shipped": round(recall_at_1(measured, shipped), 4),
        }
    if args.scifact:
        queries = collect_beir(args.scifact, args.cache or default_cache_dir(), settings)
        report["with SciFact"] = for_both(fusions, queries, grid)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
