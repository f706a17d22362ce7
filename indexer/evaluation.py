"""Retrieval evaluation on SQuAD- and BEIR-format sets, through the normal index and ask path.

An evaluation set is written out as ordinary files, indexed with `build_index` into a cached
index folder (so re-runs reuse every vector), and each question is asked with the same
`Searcher` the CLI and API use. The metrics are small pure functions over rankings.

SQuAD: each article becomes one `.txt` document whose paragraphs are its contexts, so gold
context i is the engine's paragraph i + 1 (checked after every build). BEIR: each corpus entry
becomes one Markdown document (title in front matter); metrics are at document level.
"""

from __future__ import annotations

import json
import math
import re
import string
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from indexer.build import NoProgress, Progress, build_index
from indexer.embedding import Embedder
from indexer.errors import InvalidQuery, ParaciteError
from indexer.loaders.common import collapse_whitespace
from indexer.models import AskResult, IndexReport
from indexer.retrieval import MAX_K, Mode, Searcher
from indexer.settings import Settings
from indexer.short_answer import SHORT_ANSWER_TYPES, short_answer_type
from indexer.store import read_stats
from indexer.text import content_hash, slug

Format = Literal["squad", "beir"]
Level = Literal["paragraph", "document"]

ANSWER_K = 5  # passages the answer is chosen from: the API's and CLI's default k
PARAGRAPH_DEPTH = 10  # SQuAD ranking depth (MRR@10)
DOCUMENT_DEPTH = MAX_K  # BEIR: passages asked for, the API maximum
DEEP_DEPTH = 100  # BEIR R@100, from the searcher's deep ranking
DEEP_PASSAGES_PER_DOCUMENT = 4  # passages ranked per document wanted (documents have several)
MAX_EXAMPLES = 10  # missed questions kept in a report per mode
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_,.()+-]+")


class EvalSetError(ParaciteError):
    """An evaluation set cannot be read, or the index does not line up with it."""


# -- evaluation sets ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvalDocument:
    """One document to index: file name, file text, its id in the set, expected paragraphs."""

    filename: str
    text: str
    key: str
    paragraphs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EvalQuestion:
    """A question, its relevant units (with grades) and, for SQuAD, the gold answer strings.

    A unit is a document id (BEIR) or "doc_id#paragraph" (SQuAD), in the engine's doc ids.
    """

    qid: str
    text: str
    relevant: Mapping[str, int]
    answers: tuple[str, ...] = ()


@dataclass(slots=True)
class EvalSet:
    """A loaded evaluation set, ready to be written out as files and asked."""

    name: str
    format: Format
    source: Path
    level: Level
    documents: list[EvalDocument]
    questions: list[EvalQuestion]
    split: str | None = None
    warnings: list[str] = field(default_factory=list)


def unit_key(doc_id: str, paragraph: int | None = None) -> str:
    """The unit a hit counts for: the document, or one of its paragraphs."""
    return doc_id if paragraph is None else f"{doc_id}#{paragraph}"


def detect_format(path: Path) -> Format:
    """SQuAD for a JSON file, BEIR for a folder."""
    return "beir" if path.is_dir() else "squad"


def load_eval_set(path: Path, fmt: Format | None = None, split: str = "test") -> EvalSet:
    """Load a SQuAD JSON file or a BEIR folder."""
    fmt = fmt or detect_format(path)
    return load_squad(path) if fmt == "squad" else load_beir(path, split)


def load_squad(path: Path) -> EvalSet:
    """A SQuAD v1.1 file: one `.txt` document per article, one paragraph per context."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        articles = data["data"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise EvalSetError(f"{path} is not a SQuAD file: {error}") from error
    documents: list[EvalDocument] = []
    questions: list[EvalQuestion] = []
    used: set[str] = set()
    for number, article in enumerate(articles, start=1):
        title = str(article.get("title") or f"article {number}")
        filename = _unique_name(title, ".txt", used)
        contexts = tuple(collapse_whitespace(p["context"]) for p in article["paragraphs"])
        if any(not context for context in contexts):
            raise EvalSetError(f"article {title!r} has an empty context")
        documents.append(EvalDocument(filename, "\n\n".join(contexts) + "\n", title, contexts))
        for index, paragraph in enumerate(article["paragraphs"]):
            for qa in paragraph["qas"]:
                answers = tuple(
                    dict.fromkeys(
                        collapse_whitespace(a["text"]) for a in qa.get("answers", []) if a["text"]
                    )
                )
                questions.append(
                    EvalQuestion(
                        str(qa["id"]),
                        qa["question"],
                        {unit_key(filename, index + 1): 1},
                        answers,
                    )
                )
    return EvalSet(path.stem, "squad", path, "paragraph", documents, questions)


def load_beir(folder: Path, split: str = "test") -> EvalSet:
    """A BEIR folder: `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv`."""
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        if not needed.is_file():
            have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
            hint = f" (splits here: {', '.join(have)})" if have else ""
            raise EvalSetError(f"{needed} not found; not a BEIR folder or no such split{hint}")
    documents: list[EvalDocument] = []
    doc_ids: dict[str, str] = {}
    used: set[str] = set()
    for entry in _jsonl(folder / "corpus.jsonl"):
        key = str(entry["_id"])
        filename = _unique_name(key, ".md", used)
        doc_ids[key] = filename
        title = collapse_whitespace(str(entry.get("title") or ""))
        documents.append(EvalDocument(filename, beir_markdown(title, str(entry.get("text"))), key))
    qrels: dict[str, dict[str, int]] = {}
    unknown = 0
    for line_number, line in enumerate(qrels_path.read_text(encoding="utf-8").splitlines()):
        fields = line.split("\t")
        if len(fields) < 3 or (line_number == 0 and not fields[2].strip().lstrip("-").isdigit()):
            continue  # header or blank line
        query_id, corpus_id, score = fields[0], fields[1], int(fields[2])
        if score <= 0:
            continue
        if corpus_id not in doc_ids:
            unknown += 1
            continue
        qrels.setdefault(query_id, {})[doc_ids[corpus_id]] = score
    questions = [
        EvalQuestion(str(q["_id"]), str(q["text"]), qrels[str(q["_id"])])
        for q in _jsonl(folder / "queries.jsonl")
        if str(q["_id"]) in qrels
    ]
    warnings = [f"{unknown} qrels rows name documents not in the corpus"] if unknown else []
    return EvalSet(folder.name, "beir", folder, "document", documents, questions, split, warnings)


def beir_markdown(title: str, text: str) -> str:
    """A corpus entry as Markdown: the title in front matter, the text as one paragraph."""
    body = collapse_whitespace(text) or title or "(empty)"
    if body[0] in "#`~[-*_+>=|<":  # would read as Markdown block syntax
        body = "\\" + body
    front = f"title: {json.dumps(title, ensure_ascii=False)}\n" if title else ""
    return f"---\n{front}---\n\n{body}\n"


def write_documents(eval_set: EvalSet, folder: Path) -> None:
    """Write every document of the set as a file into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for document in eval_set.documents:
        (folder / document.filename).write_text(document.text, encoding="utf-8")


def _unique_name(key: str, suffix: str, used: set[str]) -> str:
    stem = _UNSAFE_NAME.sub("_", key).strip("._") or "doc"
    stem = stem[:120]
    name, number = f"{stem}{suffix}", 1
    while name.lower() in used:
        number += 1
        name = f"{stem}~{number}{suffix}"
    used.add(name.lower())
    return name


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError as error:
                raise EvalSetError(f"{path}:{number} is not JSON: {error}") from error


# -- metrics (pure) ----------------------------------------------------------------------------


def dedupe(units: Iterable[str]) -> list[str]:
    """Units in rank order, each kept once at its best rank (windows of one paragraph)."""
    return list(dict.fromkeys(units))


def recall_at(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Share of the relevant units found in the top k."""
    if not relevant:
        return 0.0
    return sum(1 for unit in ranking[:k] if unit in relevant) / len(relevant)


def reciprocal_rank(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant unit in the top k, or 0."""
    for rank, unit in enumerate(ranking[:k], start=1):
        if unit in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """nDCG@k with linear gains (grade / log2(rank + 1)), as trec_eval and BEIR compute it."""
    dcg = sum(
        relevant.get(unit, 0) / math.log2(rank + 1)
        for rank, unit in enumerate(ranking[:k], start=1)
    )
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def answer_matches(answer: str | None, gold: Sequence[str]) -> bool:
    """True if the answer text contains one of the gold strings (case-insensitive)."""
    if not answer:
        return False
    text = collapse_whitespace(answer).casefold()
    return any(collapse_whitespace(g).casefold() in text for g in gold if g.strip())


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str | None, gold: Sequence[str]) -> float:
    """SQuAD exact match: 1 when the normalised prediction equals a normalised gold answer."""
    if prediction is None:
        return 0.0
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in gold))


def f1_score(prediction: str | None, gold: Sequence[str]) -> float:
    """SQuAD F1: token overlap of the normalised prediction with the best gold answer."""
    if prediction is None:
        return 0.0
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for answer in gold:
        expected = normalize_answer(answer).split()
        common = sum((Counter(predicted) & Counter(expected)).values())
        if common == 0:
            continue
        precision, recall = common / len(predicted), common / len(expected)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation); 0 for no values."""
    return float(np.percentile(values, q)) if values else 0.0


# -- running -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one question got: its ranking of units, answer, and how long the ask took."""

    qid: str
    question: str
    relevant: Mapping[str, int]
    ranking: tuple[str, ...]
    latency_ms: float
    answers: tuple[str, ...] = ()
    answer: str | None = None
    answer_unit: str | None = None
    deep_ranking: tuple[str, ...] | None = None
    error: str | None = None
    # Asked again with its gold paragraphs withheld (--withhold-gold): was an answer offered?
    answered_withheld: bool | None = None
    # The answerability model's confidence in the best sentence, offered or not (None when
    # nothing passed the cosine gate), asked normally and with the gold withheld; and
    # whether that sentence holds a gold answer. These give the curve over the threshold.
    confidence: float | None = None
    confidence_withheld: float | None = None
    candidate_correct: bool = False
    # The kind of short answer the question asks for (None: no typed answer) and the short
    # answer given.
    short_type: str | None = None
    short_answer: str | None = None

    def gold_rank(self) -> int | None:
        """Rank of the first relevant unit in the ranking, if there is one."""
        return next((i for i, unit in enumerate(self.ranking, 1) if unit in self.relevant), None)

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        """The outcome for reading: the ranking cut to `top`, where the gold landed."""
        row: dict[str, Any] = {
            "qid": self.qid,
            "question": self.question,
            "relevant": sorted(self.relevant),
            "gold_rank": self.gold_rank(),
            "top": list(self.ranking[:top]),
            "latency_ms": round(self.latency_ms, 2),
        }
        if self.answers:
            row["confidence"] = None if self.confidence is None else round(self.confidence, 4)
            row["answer"] = self.answer
            row["answer_unit"] = self.answer_unit
            row["answer_correct"] = answer_matches(self.answer, self.answers)
            row["short_type"] = self.short_type
            row["short_answer"] = self.short_answer
            row["gold_answers"] = list(self.answers)
        if self.error:
            row["error"] = self.error
        return row


@dataclass(slots=True)
class ModeRun:
    """Every outcome of one retrieval mode, and the wall-clock time the mode took."""

    mode: Mode
    level: Level
    outcomes: list[Outcome]
    seconds: float

    def metrics(self) -> dict[str, float | None]:
        """The headline metrics of this mode (means over questions)."""
        return summarise(self.outcomes, self.level)

    def latency(self) -> dict[str, float]:
        times = [o.latency_ms for o in self.outcomes]
        return {
            "p50": round(percentile(times, 50), 2),
            "p95": round(percentile(times, 95), 2),
            "mean": round(sum(times) / len(times), 2) if times else 0.0,
        }

    def misses(self, limit: int = MAX_EXAMPLES) -> list[dict[str, Any]]:
        """The first questions whose relevant unit is not at rank 1, for reading."""
        missed = (o for o in self.outcomes if not (o.ranking[:1] and o.ranking[0] in o.relevant))
        return [o.to_dict(top=3) for _, o in zip(range(limit), missed, strict=False)]

    def to_dict(self) -> dict[str, Any]:
        count = len(self.outcomes)
        withheld = bool(self.outcomes) and all(
            o.answered_withheld is not None for o in self.outcomes
        )
        return {
            "metrics": {k: _round(v) for k, v in self.metrics().items()},
            **({"answerability_curve": answerability_curve(self.outcomes)} if withheld else {}),
            "questions": count,
            **(
                {"short_answer_questions": short_answer_counts(self.outcomes)}
                if self.level == "paragraph"
                else {}
            ),
            "errors": sum(1 for o in self.outcomes if o.error),
            "latency_ms": self.latency(),
            "seconds": round(self.seconds, 2),
            "questions_per_second": round(count / self.seconds, 2) if self.seconds else None,
            "misses": self.misses(),
        }


def summarise(outcomes: Sequence[Outcome], level: Level) -> dict[str, float | None]:
    """Mean metrics over outcomes: paragraph level (SQuAD) or document level (BEIR)."""
    if not outcomes:
        return {}

    def mean(values: Iterable[float]) -> float:
        items = list(values)
        return sum(items) / len(items)

    if level == "paragraph":
        return {
            "R@1": mean(recall_at(o.ranking, o.relevant, 1) for o in outcomes),
            "R@5": mean(recall_at(o.ranking, o.relevant, 5) for o in outcomes),
            "MRR@10": mean(reciprocal_rank(o.ranking, o.relevant, 10) for o in outcomes),
            "answer_accuracy": mean(float(answer_matches(o.answer, o.answers)) for o in outcomes),
            "answer_in_gold_paragraph": mean(float(o.answer_unit in o.relevant) for o in outcomes),
            "answered": mean(float(o.answer is not None) for o in outcomes),
            "answer_accuracy_answered": _accuracy_answered(outcomes),
            "answered_withheld": None
            if any(o.answered_withheld is None for o in outcomes)
            else mean(float(bool(o.answered_withheld)) for o in outcomes),
            **short_answer_metrics(outcomes),
        }
    deep = [o.deep_ranking for o in outcomes]
    return {
        "nDCG@10": mean(ndcg_at(o.ranking, o.relevant, 10) for o in outcomes),
        "R@10": mean(recall_at(o.ranking, o.relevant, 10) for o in outcomes),
        "R@50": mean(recall_at(o.ranking, o.relevant, 50) for o in outcomes),
        "R@100": None
        if any(d is None for d in deep)
        else mean(recall_at(d or (), o.relevant, 100) for d, o in zip(deep, outcomes, strict=True)),
        "MRR@10": mean(reciprocal_rank(o.ranking, o.relevant, 10) for o in outcomes),
    }


def short_answer_metrics(outcomes: Sequence[Outcome]) -> dict[str, float | None]:
    """SQuAD exact match and F1 of the short answers, over the questions with a typed answer
    (a missing short answer scores 0) and per type; None where no question has that type."""
    typed = [o for o in outcomes if o.short_type is not None and o.answers]
    metrics: dict[str, float | None] = {}
    for kind, chosen in [("typed", typed)] + [
        (kind, [o for o in typed if o.short_type == kind]) for kind in SHORT_ANSWER_TYPES
    ]:
        suffix = "" if kind == "typed" else f" {kind}"
        count = len(chosen)
        metrics[f"short_EM{suffix}"] = (
            sum(exact_match(o.short_answer, o.answers) for o in chosen) / count if count else None
        )
        metrics[f"short_F1{suffix}"] = (
            sum(f1_score(o.short_answer, o.answers) for o in chosen) / count if count else None
        )
    return metrics


def short_answer_counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """How many questions ask for each type of short answer (and none)."""
    counts = {kind: 0 for kind in (*SHORT_ANSWER_TYPES, "none")}
    for outcome in outcomes:
        counts[outcome.short_type or "none"] += 1
    return counts


def _accuracy_answered(outcomes: Sequence[Outcome]) -> float | None:
    answered = [o for o in outcomes if o.answer is not None]
    if not answered:
        return None
    return sum(answer_matches(o.answer, o.answers) for o in answered) / len(answered)


CURVE_THRESHOLDS = tuple(round(0.05 * step, 2) for step in range(20))


def answerability_curve(
    outcomes: Sequence[Outcome], thresholds: Sequence[float] = CURVE_THRESHOLDS
) -> list[dict[str, float | None]]:
    """What each minimum confidence would give: answered-rate and accuracy among the
    answered on the normal questions, answered-rate with the gold paragraph withheld."""
    curve: list[dict[str, float | None]] = []
    count = len(outcomes)
    if not count:
        return curve
    for threshold in thresholds:
        answered = [o for o in outcomes if o.confidence is not None and o.confidence >= threshold]
        withheld = sum(
            1
            for o in outcomes
            if o.confidence_withheld is not None and o.confidence_withheld >= threshold
        )
        correct = sum(1 for o in answered if o.candidate_correct)
        curve.append(
            {
                "min_confidence": threshold,
                "answered": round(len(answered) / count, 4),
                "answer_accuracy_answered": round(correct / len(answered), 4) if answered else None,
                "answered_withheld": round(withheld / count, 4),
            }
        )
    return curve


def units_of(result: AskResult, level: Level) -> tuple[str, ...]:
    """The result's passages as ranked units, each once at its best rank."""
    return tuple(
        dedupe(
            unit_key(h.passage.doc_id, h.passage.paragraph if level == "paragraph" else None)
            for h in result.hits
        )
    )


def run_mode(
    searcher: Searcher,
    eval_set: EvalSet,
    mode: Mode,
    questions: Sequence[EvalQuestion] | None = None,
    progress: Progress | None = None,
    *,
    withhold_gold: bool = False,
) -> ModeRun:
    """Ask every question in one mode; latency is the wall clock around the API call.

    SQuAD: the answer and latency come from `ask(k=5)`, the API default, and the paragraph
    ranking from `search(k=10)`. BEIR: `search(k=50)` ranks documents, and R@100 uses the
    searcher's deep ranking (`Searcher.rank`).
    """
    progress = progress or NoProgress()
    questions = eval_set.questions if questions is None else questions
    deep = _DeepRanker(searcher) if eval_set.level == "document" else None
    progress.start(f"{mode} questions", len(questions))
    started = time.perf_counter()
    outcomes = [
        _ask_one(searcher, eval_set.level, mode, q, deep, withhold_gold)
        for q in _ticking(questions, progress)
    ]
    return ModeRun(mode, eval_set.level, outcomes, time.perf_counter() - started)


def _ticking(questions: Sequence[EvalQuestion], progress: Progress) -> Iterable[EvalQuestion]:
    for question in questions:
        yield question
        progress.advance()


def _ask_one(
    searcher: Searcher,
    level: Level,
    mode: Mode,
    question: EvalQuestion,
    deep: _DeepRanker | None,
    withhold_gold: bool = False,
) -> Outcome:
    try:
        if level == "paragraph":
            started = time.perf_counter()
            result = searcher.ask(question.text, ANSWER_K, mode)
            latency = (time.perf_counter() - started) * 1000
            ranking = units_of(searcher.search(question.text, PARAGRAPH_DEPTH, mode), level)
            answer = result.answer
            assessed = result.assessment
            answered_withheld, confidence_withheld = None, None
            if withhold_gold:
                gold = [_paragraph_of(unit) for unit in question.relevant]
                unanswerable = searcher.ask(question.text, ANSWER_K, mode, withhold=gold)
                answered_withheld = unanswerable.answer is not None
                if unanswerable.assessment is not None:
                    confidence_withheld = unanswerable.assessment.confidence
            return Outcome(
                question.qid,
                question.text,
                question.relevant,
                ranking,
                latency,
                question.answers,
                answer.text if answer else None,
                unit_key(answer.doc_id, answer.paragraph) if answer else None,
                answered_withheld=answered_withheld,
                confidence=assessed.confidence if assessed else None,
                confidence_withheld=confidence_withheld,
                candidate_correct=assessed is not None
                and answer_matches(assessed.candidate.text, question.answers),
                short_type=short_answer_type(question.text),
                short_answer=answer.short.text if answer and answer.short else None,
            )
        started = time.perf_counter()
        result = searcher.search(question.text, DOCUMENT_DEPTH, mode)
        latency = (time.perf_counter() - started) * 1000
        deep_ranking = deep.rank(question.text, mode, DEEP_DEPTH) if deep else None
        return Outcome(
            question.qid,
            question.text,
            question.relevant,
            units_of(result, level),
            latency,
            deep_ranking=deep_ranking,
        )
    except InvalidQuery as error:
        return Outcome(question.qid, question.text, question.relevant, (), 0.0, error=str(error))


def _paragraph_of(unit: str) -> tuple[str, int]:
    """("doc.txt", 3) from the unit key "doc.txt#3"."""
    doc_id, _, number = unit.rpartition("#")
    return doc_id, int(number)


class _DeepRanker:
    """Documents ranked beyond the API's k, from `Searcher.rank`."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher

    def rank(self, question: str, mode: Mode, depth: int) -> tuple[str, ...]:
        ranking: dict[str, None] = {}
        for passage in self.searcher.rank(question, mode, depth * DEEP_PASSAGES_PER_DOCUMENT):
            ranking.setdefault(passage.doc_id, None)
            if len(ranking) >= depth:
                break
        return tuple(ranking)


# -- the whole evaluation ----------------------------------------------------------------------


@dataclass(slots=True)
class EvalReport:
    """An evaluation run: the set, the index it built, and one run per mode."""

    eval_set: EvalSet
    settings: Settings
    index_dir: Path
    build: IndexReport
    runs: list[ModeRun]
    questions: int
    limit: int | None
    weights: dict[str, float]
    answer_threshold: float
    min_confidence: float
    date: str
    git: dict[str, Any]
    command: str | None = None

    def details(self) -> Iterable[dict[str, Any]]:
        """One row per question and mode, for failure analysis (JSON lines)."""
        for run in self.runs:
            for outcome in run.outcomes:
                yield {"mode": run.mode, **outcome.to_dict()}

    def metric_names(self) -> list[str]:
        return list(self.runs[0].metrics()) if self.runs else []

    def to_dict(self) -> dict[str, Any]:
        stats = read_stats(self.index_dir)
        s = self.eval_set
        return {
            "command": self.command,
            "date": self.date,
            "git": self.git,
            "dataset": {
                "name": s.name,
                "format": s.format,
                "path": str(s.source),
                "split": s.split,
                "level": s.level,
                "documents": len(s.documents),
                "questions": len(s.questions),
                "questions_evaluated": self.questions,
                "limit": self.limit,
                "warnings": s.warnings,
            },
            "model": {"name": stats.model, "backend": stats.backend, "dimension": stats.dimension},
            "settings": {
                "answer_threshold": self.answer_threshold,
                "min_confidence": self.min_confidence,
                "reader": self.settings.reader,
                "window_overlap": self.settings.window_overlap,
                "batch_size": self.settings.batch_size,
                # Segments of at least this many passages are searched through ANN (0: all).
                "ann_min_passages": self.settings.ann_min_passages,
                "fusion_weights": self.weights,
                "answer_k": ANSWER_K if s.level == "paragraph" else None,
                "ranking_k": PARAGRAPH_DEPTH if s.level == "paragraph" else DOCUMENT_DEPTH,
            },
            "index": {
                "path": str(self.index_dir),
                "passages": stats.passages,
                "sentences": stats.sentences,
                "chunking": stats.chunking,
                "sentence_vectors": stats.sentence_vectors,
                "passage_vectors": stats.passage_vectors,
                "build_seconds": round(self.build.seconds, 2),
                "embedded": self.build.embedded,
                "reused_embeddings": self.build.reused_embeddings,
                "up_to_date": self.build.up_to_date,
            },
            "modes": {run.mode: run.to_dict() for run in self.runs},
        }


def default_cache_dir() -> Path:
    """Where evaluation indexes (and their embedding caches) live between runs."""
    return Settings().cache_dir.expanduser() / "eval"


def workspace_for(eval_set: EvalSet, settings: Settings, cache_dir: Path) -> Path:
    """The index folder of one set and model: stable, so re-runs reuse vectors and work."""
    digest = content_hash(str(eval_set.source.resolve()).encode())[:8]
    return cache_dir / f"{eval_set.name}-{digest}-{slug(settings.model, 60)}-{settings.backend}"


def build_eval_index(
    eval_set: EvalSet,
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
    reuse_index: bool = False,
) -> IndexReport:
    """Write the set's documents into a temporary folder and index them into `settings.index`.

    Every document is re-chunked by the current code, since an index left by an older
    checkout would otherwise pass as up to date; the vectors come from the embedding cache
    kept in the index folder, so only new texts are embedded. `reuse_index` keeps an index
    whose documents are unchanged as it is (faster; blind to chunking code changes).
    """
    with tempfile.TemporaryDirectory(prefix=f"paracite-eval-{eval_set.name}-") as folder:
        write_documents(eval_set, Path(folder))
        return build_index(
            Path(folder),
            settings,
            rebuild=not reuse_index,
            progress=progress,
            embedder=embedder,
        )


def check_alignment(searcher: Searcher, eval_set: EvalSet) -> list[str]:
    """Check the index holds the set as written; return warnings, raise on a SQuAD mismatch.

    SQuAD gold contexts must be the engine's paragraphs 1..n in order, or every paragraph
    metric would be silently wrong.
    """
    indexed = {info.doc_id: info for info in searcher.documents()}
    missing = [d.filename for d in eval_set.documents if d.filename not in indexed]
    if eval_set.format == "squad":
        if missing:
            raise EvalSetError(f"documents missing from the eval index: {', '.join(missing)}")
        for document in eval_set.documents:
            view = searcher.document(document.filename)
            found = [b.text for b in view.blocks if b.kind == "paragraph"]
            if len(found) != len(document.paragraphs):
                raise EvalSetError(
                    f"{document.filename}: the index has {len(found)} paragraphs but the article "
                    f"has {len(document.paragraphs)} contexts; paragraph numbers would not match"
                )
            for number, (got, want) in enumerate(
                zip(found, document.paragraphs, strict=True), start=1
            ):
                if got != want:
                    raise EvalSetError(
                        f"{document.filename}: paragraph {number} is not context {number - 1} "
                        f"({got[:60]!r} vs {want[:60]!r})"
                    )
        return []
    return (
        [f"{len(missing)} documents were not indexed: {', '.join(missing[:5])}"] if missing else []
    )


def evaluate(
    eval_set: EvalSet,
    settings: Settings,
    modes: Sequence[Mode],
    *,
    embedder: Embedder | None = None,
    limit: int | None = None,
    reuse_index: bool = False,
    build_progress: Progress | None = None,
    question_progress: Callable[[], Progress] | None = None,
    command: str | None = None,
    withhold_gold: bool = False,
) -> EvalReport:
    """Build (or update) the set's index in `settings.index`, then ask its questions per mode.

    `withhold_gold` also asks each SQuAD question with its gold paragraph withheld."""
    build = build_eval_index(
        eval_set, settings, embedder=embedder, progress=build_progress, reuse_index=reuse_index
    )
    searcher = Searcher.from_settings(settings, embedder=embedder)
    try:
        eval_set.warnings.extend(check_alignment(searcher, eval_set))
        questions = eval_set.questions[:limit] if limit else eval_set.questions
        runs = []
        for mode in modes:
            progress = question_progress() if question_progress else None
            runs.append(
                run_mode(
                    searcher,
                    eval_set,
                    mode,
                    questions,
                    progress,
                    withhold_gold=withhold_gold and eval_set.level == "paragraph",
                )
            )
        weights = asdict(searcher.weights)
        answer_threshold = searcher.answer_threshold
        min_confidence = searcher.min_confidence
    finally:
        searcher.close()
    return EvalReport(
        eval_set=eval_set,
        settings=settings,
        index_dir=settings.index,
        build=build,
        runs=runs,
        questions=len(questions),
        limit=limit,
        weights=weights,
        answer_threshold=answer_threshold,
        min_confidence=min_confidence,
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        git=git_state(),
        command=command,
    )


def git_state(repo: Path | None = None) -> dict[str, Any]:
    """The commit the code came from, and which source files differ from it."""
    repo = repo or Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", "indexer", "server")
    # Porcelain lines are "XY path": two status columns and a space.
    changed = [line[3:] for line in status.splitlines() if line.strip()] if status else []
    return {"commit": commit.strip() if commit else None, "changed": changed}


def markdown_summary(data: Mapping[str, Any]) -> str:
    """A short Markdown table of a report (as `EvalReport.to_dict` gives it), modes side by side."""
    modes = list(data["modes"])
    lines = [
        f"# {data['dataset']['name']} ({data['dataset']['format']}"
        + (f", split {data['dataset']['split']}" if data["dataset"]["split"] else "")
        + ")",
        "",
        f"- date: {data['date']}; commit: {data['git']['commit']}"
        + (f" (changed: {', '.join(data['git']['changed'])})" if data["git"]["changed"] else ""),
        f"- command: `{data['command']}`" if data["command"] else "- command: (library call)",
        f"- model: {data['model']['name']} ({data['model']['backend']}); "
        f"{data['dataset']['documents']} documents, {data['index']['passages']} passages, "
        f"{data['index']['sentences']} sentences; "
        f"{data['dataset']['questions_evaluated']} questions",
        f"- index build: {data['index']['build_seconds']:.1f} s "
        f"({data['index']['embedded']} texts embedded, "
        f"{data['index']['reused_embeddings']} reused)",
        "",
        "| metric | " + " | ".join(modes) + " |",
        "|---|" + "---|" * len(modes),
    ]
    for name in data["modes"][modes[0]]["metrics"] if modes else []:
        values = [data["modes"][m]["metrics"].get(name) for m in modes]
        lines.append(f"| {name} | " + " | ".join(_cell(v) for v in values) + " |")
    for key in ("p50", "p95"):
        values = [f"{data['modes'][m]['latency_ms'][key]:.1f}" for m in modes]
        lines.append(f"| latency {key} (ms) | " + " | ".join(values) + " |")
    values = [f"{data['modes'][m]['questions_per_second'] or 0:.1f}" for m in modes]
    lines.append("| questions/s | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
