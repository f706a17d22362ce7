"""The answer stage: the top passages as hits, each with its best sentence, and the answer."""

from __future__ import annotations

from dataclasses import replace

from indexer.answer import expected_answer_type, has_new_answer_of_type, sentence_score
from indexer.models import Answer, Hit
from indexer.search.types import Fused, Query
from indexer.segments import SegmentedStore


class AnswerStage:
    """Turns the best fused passages into hits and picks the answering sentence.

    A sentence counts as an answer only if some sentence of the hits reaches
    `answer_threshold` cosine with the question; otherwise no sentence is offered.
    """

    def __init__(self, store: SegmentedStore, answer_threshold: float) -> None:
        self.store = store
        self.answer_threshold = answer_threshold

    def run(
        self,
        query: Query,
        fused: Fused,
        k: int,
        *,
        want_answer: bool,
        prefer_first: bool,
        offset: int = 0,
    ) -> tuple[list[Hit], Answer | None]:
        """The `k` best hits after skipping `offset`, and the answer when wanted (None when
        nothing answers; an answer belongs to the first page only)."""
        top = fused.order()[offset : offset + k]
        passages = self.store.passages(fused.rows[top])
        answer_type = expected_answer_type(query.text)
        hits = []
        relevant = False
        ranked = enumerate(zip(top, passages, strict=True), start=offset + 1)
        for rank, (position, passage) in ranked:
            passage_score = float(fused.scores[position])
            first = int(fused.sentence_start[position])
            best, best_score = None, float("-inf")
            clears = False
            for at, sentence in enumerate(passage.sentences, start=first):
                dense = float(fused.sentence_dense[at])
                clears = clears or dense >= self.answer_threshold
                score = sentence_score(
                    dense,
                    float(fused.sentence_lexical[at]),
                    passage_score,
                    answer_type is not None
                    and has_new_answer_of_type(answer_type, sentence.text, query.text),
                )
                if score > best_score:
                    best, best_score = sentence, score
            hits.append(Hit(rank, passage_score, passage, best, best_score, cited=clears))
            relevant = relevant or clears
        if not relevant:
            # Nothing is close enough to the question: no sentence is offered as an answer.
            hits = [replace(hit, best_sentence=None) for hit in hits]
        answer = choose_answer(hits, prefer_first) if want_answer and offset == 0 else None
        if answer is not None:  # the passage holding the answer is a source, whatever else
            hits = [replace(hit, cited=True) if hit.rank == answer.passage else hit for hit in hits]
        return hits, answer


def choose_answer(hits: list[Hit], prefer_first: bool = False) -> Answer | None:
    """The best-scoring answer sentence among the hits, or the first hit's when preferred."""
    candidates = [hit for hit in hits if hit.best_sentence is not None]
    if not candidates:
        return None
    hit = max(candidates, key=lambda h: h.sentence_score)
    if prefer_first and candidates[0].rank == 1:
        hit = candidates[0]
    sentence = hit.best_sentence
    assert sentence is not None
    p = hit.passage
    return Answer(
        text=sentence.text,
        passage=hit.rank,
        doc_id=p.doc_id,
        title=p.title,
        paragraph=p.paragraph,
        char_start=sentence.char_start,
        char_end=sentence.char_end,
        score=hit.sentence_score,
    )
