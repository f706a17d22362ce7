"""What the fitting and experiment scripts in eval/ share: a SQuAD-format tuning set opened
for search, and a question fused and laid out for the sentence choice as `Searcher.ask` does.

Eval scripts may reach inside the searcher: they need the stages' intermediate signals.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from indexer.answerability import rarity_weights
from indexer.evaluation import (
    ANSWER_K,
    EvalSet,
    answer_matches,
    build_eval_index,
    load_squad,
    workspace_for,
)
from indexer.models import Passage
from indexer.retrieval import Searcher
from indexer.search.types import Fused, Query
from indexer.sentence_choice import ChoiceContext, sentence_scores
from indexer.settings import Settings
from indexer.text import lexical_terms

Remembered = TypeVar("Remembered")


def remembered(path: Path, make: Callable[[], Remembered]) -> Remembered:
    """What `make` gives, pickled at `path` the first time and read back from it after (the
    questions asked through the engine, which take minutes)."""
    if path.exists():
        value: Remembered = pickle.loads(path.read_bytes())
        return value
    value = make()
    path.write_bytes(pickle.dumps(value))
    return value


def open_squad(
    path: Path, cache: Path, settings: Settings | None = None, reuse_index: bool = False
) -> tuple[EvalSet, dict[str, int], Searcher]:
    """The set, each document's article number, and a searcher over its index in `cache`
    (built or updated first; `settings`: the defaults unless given)."""
    eval_set = load_squad(path)
    settings = settings or Settings()
    settings = settings.with_overrides(index=workspace_for(eval_set, settings, cache))
    build_eval_index(eval_set, settings, reuse_index=reuse_index)
    article_of = {document.filename: n for n, document in enumerate(eval_set.documents)}
    searcher = Searcher.open(settings.index, answer_threshold=settings.answer_threshold)
    return eval_set, article_of, searcher


def fuse_as_asked(
    searcher: Searcher, question: str, withhold: Sequence[tuple[str, int]] = ()
) -> tuple[Query, Fused]:
    """The question analysed and fused as `Searcher.ask` does (hybrid, whole index but the
    withheld (doc id, paragraph) pairs)."""
    query = searcher._query(question, "hybrid", searcher._in_scope(None, withhold))
    assert query is not None
    _, fused = searcher._fuse(query, searcher._candidates.per_signal)
    return query, fused


def choice_candidates(
    searcher: Searcher, question: str, withhold: Sequence[tuple[str, int]] = ()
) -> tuple[Fused, np.ndarray, list[Passage], ChoiceContext]:
    """The fused question, the positions of its best `ANSWER_K` passages, those passages,
    and the sentence choice's context over them, as the answer stage has them."""
    query, fused = fuse_as_asked(searcher, question, withhold)
    top = fused.order()[:ANSWER_K]
    passages = searcher._store.passages(fused.rows[top])
    rarity = rarity_weights(
        query.terms, [set(lexical_terms(f"{p.title} {p.text}")) for p in passages]
    )
    return fused, top, passages, ChoiceContext.of(query.text, query.terms, rarity)


def best_choices(
    searcher: Searcher,
    question: str,
    answers: tuple[str, ...],
    n: int,
    withhold: Sequence[tuple[str, int]] = (),
) -> list[tuple[str, float, bool]]:
    """The `n` best sentences of the top passages by the fitted choice score: (text, score,
    whether it holds a gold answer), best first (with `withhold` left out, as asked so)."""
    fused, top, passages, context = choice_candidates(searcher, question, withhold)
    scored = []
    for position, passage in zip(top, passages, strict=True):
        first = int(fused.sentence_start[position])
        end = first + len(passage.sentences)
        scores = sentence_scores(
            context,
            passage,
            float(fused.scores[position]),
            fused.sentence_dense[first:end],
            fused.sentence_lexical[first:end],
        )
        scored += [
            (s.text, float(v), answer_matches(s.text, answers))
            for s, v in zip(passage.sentences, scores, strict=True)
        ]
    scored.sort(key=lambda item: -item[1])
    return scored[:n]
