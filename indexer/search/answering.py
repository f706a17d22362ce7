"""The answer stage: the top passages as hits, each with its best sentence, and the answer."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from indexer.answer import has_new_answer_of_type
from indexer.answerability import (
    MAX_MARGIN,
    AnswerEvidence,
    choice_spread,
    coverage,
    evidence_logit,
    logistic,
    logit,
    missing_share,
    phrase_coverage,
    question_names,
    question_numbers,
    rarity_weights,
    weighted_coverage,
)
from indexer.models import Answer, Assessment, Hit, Passage, Sentence
from indexer.reader import (
    ALWAYS,
    READER_CANDIDATES,
    READER_WEIGHT,
    Reader,
    WhenToRead,
    is_question,
    stacked_confidence,
)
from indexer.search.types import Fused, Query
from indexer.segments import SegmentedStore
from indexer.sentence_choice import ChoiceContext, sentence_scores, similarity_scores
from indexer.short_answer import ShortAnswer, find_short_span, short_answer_type, source_span
from indexer.text import lexical_terms


@dataclass(frozen=True, slots=True)
class Answered:
    """What the answer stage gives: the hits, the answer (or None) and how it was judged."""

    hits: list[Hit]
    answer: Answer | None
    # None when no sentence passed the cosine gate (off-topic) or no answer was wanted.
    assessment: Assessment | None = None


@dataclass(frozen=True, slots=True)
class _Scored:
    """A hit's best sentence with the signals it was scored on."""

    position: int  # the passage's position among the fused rows
    sentence: int  # the sentence's position among the fused sentences
    dense: float
    lexical: float
    choice: float  # its choice score, before the reader's part (the evidence reads this)


# Passages the answerability evidence compares the best sentence with (the API's default k,
# which the model was fitted at): its sentence margin and how rare each question term is.
EVIDENCE_PASSAGES = 5


class AnswerStage:
    """Turns the best fused passages into hits and picks the answering sentence.

    Two gates: some sentence of the hits must reach `answer_threshold` cosine with the
    question (else the documents are off the subject), and the answerability model must
    give the best sentence at least `min_confidence` (else they discuss the subject without
    answering). Either way, below a gate no sentence is offered and nothing is a source.
    With a `reader` (`indexer.reader`), the best candidate sentences are also read with the
    question, or the answer alone, as `read_when` says: its logits move the choice and join
    the answerability model's confidence.
    """

    def __init__(
        self,
        store: SegmentedStore,
        answer_threshold: float,
        min_confidence: float,
        reader: Reader | None = None,
        read_when: WhenToRead = ALWAYS,
    ) -> None:
        self.store = store
        self.answer_threshold = answer_threshold
        self.min_confidence = min_confidence
        self.reader = reader
        self.read_when = read_when

    def run(
        self,
        query: Query,
        fused: Fused,
        k: int,
        *,
        want_answer: bool,
        prefer_first: bool,
        offset: int = 0,
    ) -> Answered:
        """The `k` best hits after skipping `offset`, and the answer when wanted (None when
        nothing answers; an answer belongs to the first page only)."""
        judged = want_answer and offset == 0
        # The answerability evidence always compares the same number of passages, whatever k.
        shown = max(k, EVIDENCE_PASSAGES) if judged else k
        top = fused.order()[offset : offset + shown]
        passages = self.store.passages(fused.rows[top])
        choice = self._choice_context(query, fused, passages, offset)
        hits = []
        scored: dict[int, _Scored] = {}
        sentence_scores_seen: dict[int, float] = {}  # of the context passages, by sentence
        ranked = list(enumerate(zip(top, passages, strict=True), start=offset + 1))
        all_scores = [
            self._sentence_scores(choice, fused, position, passage, rank)
            for rank, (position, passage) in ranked
        ]
        clearing = [self._clears(fused, position, passage) for _, (position, passage) in ranked]
        # What the reader adds to a sentence's score, by its position among fused sentences
        # (read only when an answer may be offered: on the first page, past the cosine gate).
        read: dict[int, float] = (
            self._read(query, ranked, all_scores, fused)
            if judged and self._reads(query) and any(clearing[:k])
            else {}
        )
        # A sentence the reader did not read counts as read no better than the worst it did:
        # most logits are negative, and an unread sentence (below every read one by choice
        # score) must not overtake them for having been skipped.
        unread = min(read.values()) if read else 0.0
        for (rank, (position, passage)), scores, clears in zip(
            ranked, all_scores, clearing, strict=True
        ):
            passage_score = float(fused.scores[position])
            first = int(fused.sentence_start[position])
            best, best_score, best_at = None, float("-inf"), first
            for at, (sentence, score) in enumerate(zip(passage.sentences, scores, strict=True)):
                if rank <= offset + EVIDENCE_PASSAGES:
                    sentence_scores_seen[first + at] = float(score)
                score = float(score) + READER_WEIGHT * read.get(first + at, unread)
                if score > best_score:
                    best, best_score, best_at = sentence, score, first + at
            hits.append(Hit(rank, passage_score, passage, best, best_score, cited=clears))
            scored[rank] = _Scored(
                int(position),
                best_at,
                float(fused.sentence_dense[best_at]),
                float(fused.sentence_lexical[best_at]),
                float(scores[best_at - first]),
            )
        # The passages the evidence compares with, before the hits are cut to k.
        compared = passages[:EVIDENCE_PASSAGES]
        hits = hits[:k]
        if not any(hit.cited for hit in hits):
            # Nothing is close enough to the question: no sentence is offered as an answer.
            return Answered(_unsourced(hits), None)
        if not judged:
            return Answered(hits, None)
        # Chosen among the first passages the evidence covers (as fitted), whatever k: a longer
        # list does not change the answer, a shorter one offers it only from its own passages.
        answer = choose_answer(hits[:EVIDENCE_PASSAGES], prefer_first)
        if answer is None:
            return Answered(hits, None)
        hit = hits[answer.passage - 1]
        assert hit.best_sentence is not None
        assert choice is not None  # the first page always scores its first passages in full
        evidence = self._evidence(
            query, fused, hit, scored[hit.rank], choice, sentence_scores_seen, compared
        )
        byline = prefer_first and answer.passage == 1
        # The author note answering "who wrote ...?" is read from the document's own byline,
        # not inferred from how well a sentence matches: it is not the model's to turn down.
        reader_logit = None
        log_odds = evidence_logit(evidence)
        if byline:
            sure = 1.0
        elif read or self._decision_is_close(query, log_odds):
            at = scored[hit.rank].sentence
            reader_logit = read[at] if at in read else self._read_one(query, hit)
            sure = stacked_confidence(log_odds, reader_logit)
        else:
            sure = logistic(log_odds)
        answer = replace(answer, confidence=sure)
        answered = sure >= self.min_confidence
        assessment = Assessment(answer, evidence, sure, answered, reader_logit)
        if not answered:
            # On the subject, but the best sentence is unlikely to answer: related passages only.
            return Answered(_unsourced(hits), None, assessment)
        answer = replace(answer, short=self._short_answer(query, hit))
        # The passage holding the answer is a source, whatever else.
        hits = [replace(h, cited=True) if h.rank == answer.passage else h for h in hits]
        return Answered(hits, answer, assessment)

    def _sentence_scores(
        self,
        choice: ChoiceContext | None,
        fused: Fused,
        position: int,
        passage: Passage,
        rank: int,
    ) -> np.ndarray:
        """Each sentence's score in its passage: the fitted choice model's for the passages
        an answer is chosen from, the similarity terms alone past them (reading every
        sentence's text for the other signals would cost milliseconds at k=50)."""
        passage_score = float(fused.scores[position])
        first = int(fused.sentence_start[position])
        end = first + len(passage.sentences)
        dense = fused.sentence_dense[first:end]
        lexical = fused.sentence_lexical[first:end]
        if choice is not None and rank <= EVIDENCE_PASSAGES:
            return np.asarray(sentence_scores(choice, passage, passage_score, dense, lexical))
        return np.asarray(similarity_scores(passage_score, dense, lexical))

    def _clears(self, fused: Fused, position: int, passage: Passage) -> bool:
        """Whether a sentence of the passage reaches the cosine gate."""
        first = int(fused.sentence_start[position])
        dense = fused.sentence_dense[first : first + len(passage.sentences)]
        return bool((dense >= self.answer_threshold).any())

    def _read(
        self,
        query: Query,
        ranked: list[tuple[int, tuple[int, Passage]]],
        all_scores: list[np.ndarray],
        fused: Fused,
    ) -> dict[int, float]:
        """The reader's logits for the best READER_CANDIDATES sentences by choice score of
        the first passages, by their positions among the fused sentences; none when the best
        leads the next by the choice margin of `read_when` or more (the choice is clear)."""
        assert self.reader is not None
        candidates: list[tuple[float, int, str]] = []
        for (rank, (position, passage)), scores in zip(ranked, all_scores, strict=True):
            if rank > EVIDENCE_PASSAGES:
                break
            first = int(fused.sentence_start[position])
            candidates += [
                (float(score), first + at, sentence.text)
                for at, (sentence, score) in enumerate(zip(passage.sentences, scores, strict=True))
            ]
        candidates.sort(key=lambda candidate: -candidate[0])
        if len(candidates) > 1 and (
            candidates[0][0] - candidates[1][0] >= self.read_when.choice_margin
        ):
            return {}
        chosen = candidates[:READER_CANDIDATES]
        logits = self.reader.logits(query.text, [text for _, _, text in chosen])
        return {at: float(value) for (_, at, _), value in zip(chosen, logits, strict=True)}

    def _reads(self, query: Query) -> bool:
        """Whether the reader reads this query at all: only questions, as it was trained."""
        return self.reader is not None and is_question(query.text)

    def _decision_is_close(self, query: Query, log_odds: float) -> bool:
        """Whether the answerability model's log-odds are near enough the minimum
        confidence's that the reader's logit on the answer could turn the decision."""
        if not self._reads(query):
            return False
        distance = abs(log_odds - logit(self.min_confidence))
        return distance < self.read_when.decision_margin

    def _read_one(self, query: Query, hit: Hit) -> float:
        assert self.reader is not None and hit.best_sentence is not None
        return float(self.reader.logits(query.text, [hit.best_sentence.text])[0])

    def _choice_context(
        self, query: Query, fused: Fused, passages: list[Passage], offset: int
    ) -> ChoiceContext | None:
        """The question's context for scoring the sentences of the first passages (None
        when none of them is shown): term rarity is measured over those first passages."""
        if offset >= EVIDENCE_PASSAGES:
            return None
        if offset > 0 or len(passages) < EVIDENCE_PASSAGES:  # a later page, or k below five
            passages = self.store.passages(fused.rows[fused.order()[:EVIDENCE_PASSAGES]])
        first = [set(lexical_terms(f"{p.title} {p.text}")) for p in passages[:EVIDENCE_PASSAGES]]
        return ChoiceContext.of(query.text, query.terms, rarity_weights(query.terms, first))

    def _short_answer(self, query: Query, hit: Hit) -> ShortAnswer | None:
        """The name, date, number, amount or place the question asks for, inside the
        answer sentence, with its offsets in the document's source (None when there is none)."""
        kind = short_answer_type(query.text)
        sentence = hit.best_sentence
        if kind is None or sentence is None:
            return None
        local = find_short_span(kind, sentence.text, query.text)
        if local is None:
            return None
        document = self.store.document(hit.passage.doc_id)
        if document is None:
            return None
        span = source_span(
            document.source, sentence.text, sentence.char_start, sentence.char_end, local
        )
        if span is None:
            return None
        return ShortAnswer(document.source[span[0] : span[1]], span[0], span[1], local[0])

    def _evidence(
        self,
        query: Query,
        fused: Fused,
        hit: Hit,
        scored: _Scored,
        choice: ChoiceContext,
        sentence_scores: dict[int, float],
        compared: list[Passage],
    ) -> AnswerEvidence:
        """The answerability model's inputs for the hit's best sentence (`compared`: the
        top passages, whose sentences' choice scores are `sentence_scores`)."""
        sentence = hit.best_sentence
        assert sentence is not None
        passage = hit.passage
        others = [score for at, score in sentence_scores.items() if at != scored.sentence]
        runner_up = max(others, default=scored.choice - MAX_MARGIN)
        margin = max(-MAX_MARGIN, min(MAX_MARGIN, scored.choice - runner_up))
        position = scored.position
        other_scores = np.delete(fused.scores, position)
        best_other = float(other_scores.max()) if len(other_scores) else 0.0
        answer_type = choice.answer_type
        found = answer_type is not None and has_new_answer_of_type(
            answer_type, sentence.text, query.text
        )
        sentence_sequence = lexical_terms(sentence.text)
        sentence_terms = set(sentence_sequence)
        passage_terms = set(lexical_terms(passage.text))
        weights = choice.rarity
        choice_margin, choice_evenness = choice_spread(scored.choice, others)
        everything = " ".join(f"{p.title} {p.text}" for p in compared)
        names = question_names(query.text)
        dense = scored.dense - self.answer_threshold
        return AnswerEvidence(
            dense=dense,
            lexical=scored.lexical,
            passage=float(fused.scores[position]),
            passage_coverage=coverage(query.terms, passage_terms),
            sentence_rare_coverage=weighted_coverage(weights, sentence_terms),
            passage_rare_coverage=weighted_coverage(weights, passage_terms),
            phrase_coverage=phrase_coverage(lexical_terms(query.text), sentence_sequence),
            type_found=float(found),
            type_missing=float(answer_type is not None and not found),
            margin=margin,
            passage_margin=float(fused.scores[position]) - best_other,
            dense_gap=float(fused.passage_dense.max()) - float(fused.passage_dense[position]),
            passage_lexical=float(fused.passage_lexical[position]),
            choice_margin=choice_margin,
            choice_evenness=choice_evenness,
            sentence_names_missing=missing_share(names, sentence.text),
            passage_names_missing=missing_share(names, f"{passage.title} {passage.text}"),
            numbers_missing=missing_share(question_numbers(query.text), everything),
            dense_squared=max(dense, 0.0) ** 2,
        )


def _unsourced(hits: list[Hit]) -> list[Hit]:
    """The hits as related passages: no answering sentence, nothing cited."""
    return [replace(hit, best_sentence=None, cited=False) for hit in hits]


def choose_answer(hits: list[Hit], prefer_first: bool = False) -> Answer | None:
    """The best-scoring answer sentence among the hits, or the first hit's when preferred.

    Its confidence is left at 0 for the caller to fill in."""
    candidates = [hit for hit in hits if hit.best_sentence is not None]
    if not candidates:
        return None
    hit = max(candidates, key=lambda h: h.sentence_score)
    if prefer_first and candidates[0].rank == 1:
        hit = candidates[0]
    sentence: Sentence | None = hit.best_sentence
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
        confidence=0.0,
    )
