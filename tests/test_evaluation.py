"""`paracite eval`: metrics on hand-made rankings, set loading, and tiny end-to-end runs."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer import build, retrieval
from indexer.embedding import Embedder
from indexer.evaluation import (
    EvalSetError,
    Outcome,
    answer_matches,
    beir_markdown,
    dedupe,
    evaluate,
    git_state,
    load_beir,
    load_eval_set,
    load_squad,
    markdown_summary,
    ndcg_at,
    percentile,
    recall_at,
    reciprocal_rank,
    short_answer_counts,
    short_answer_metrics,
    summarise,
    unit_key,
)
from indexer.retrieval import MODES, Searcher
from indexer.settings import Settings
from indexer.short_answer import short_answer_type
from server.cli import main

# -- metrics -----------------------------------------------------------------------------------


def test_dedupe_keeps_each_unit_at_its_best_rank() -> None:
    assert dedupe(["a#1", "b#2", "a#1", "c#1", "b#2"]) == ["a#1", "b#2", "c#1"]


def test_recall_and_reciprocal_rank() -> None:
    ranking = ["x", "a", "y", "b"]
    relevant = {"a": 1, "b": 1}
    assert recall_at(ranking, relevant, 1) == 0.0
    assert recall_at(ranking, relevant, 2) == 0.5
    assert recall_at(ranking, relevant, 10) == 1.0
    assert reciprocal_rank(ranking, relevant, 10) == 0.5
    assert reciprocal_rank(ranking, {"b": 1}, 3) == 0.0
    assert recall_at(ranking, {}, 5) == 0.0


def test_ndcg_on_known_rankings() -> None:
    relevant = {"a": 1, "b": 1}
    assert ndcg_at(["a", "b", "x"], relevant, 10) == pytest.approx(1.0)
    # DCG = 1 + 1/log2(4); ideal = 1 + 1/log2(3)
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at(["a", "x", "b"], relevant, 10) == pytest.approx(expected)
    assert ndcg_at(["a", "x", "b"], relevant, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    # Graded: the grade-2 unit at rank 2 instead of rank 1.
    graded = {"a": 2, "b": 1}
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert ndcg_at(["b", "a"], graded, 10) == pytest.approx(expected)
    assert ndcg_at(["x", "y"], relevant, 10) == 0.0
    assert ndcg_at([], {}, 10) == 0.0


def test_answer_matches_is_case_and_space_insensitive() -> None:
    assert answer_matches("The Denver Broncos won.", ["denver  broncos"])
    assert answer_matches("It was in\nSanta Clara.", ["Santa Clara"])
    assert not answer_matches("Carolina lost.", ["Denver"])
    assert not answer_matches(None, ["Denver"])
    assert not answer_matches("anything", [" "])


def test_git_state_names_the_changed_source_files(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "indexer").mkdir()
    (tmp_path / "indexer" / "a.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    (tmp_path / "indexer" / "a.py").write_text("x = 2\n")
    state = git_state(tmp_path)
    assert state["changed"] == ["indexer/a.py"]
    assert state["commit"] is not None and len(state["commit"]) == 40


def test_percentile_interpolates() -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == pytest.approx(25.0)
    assert percentile([1.0] * 19 + [100.0], 95) == pytest.approx(5.95)
    assert percentile([], 95) == 0.0


def test_summarise_paragraph_level() -> None:
    gold = {unit_key("a.txt", 2): 1}
    outcomes = [
        Outcome(
            "1", "q1", gold, ("a.txt#2", "a.txt#1"), 10.0, ("Paris",), "It is Paris.", "a.txt#2"
        ),
        Outcome("2", "q2", gold, ("a.txt#1", "b.txt#1", "a.txt#2"), 20.0, ("Rome",), None, None),
        Outcome("3", "q3", gold, ("b.txt#3",), 30.0, ("Oslo",), "Not here.", "b.txt#3"),
    ]
    metrics = summarise(outcomes, "paragraph")
    assert metrics["R@1"] == pytest.approx(1 / 3)
    assert metrics["R@5"] == pytest.approx(2 / 3)
    assert metrics["MRR@10"] == pytest.approx((1 + 1 / 3) / 3)
    assert metrics["answer_accuracy"] == pytest.approx(1 / 3)
    assert metrics["answer_in_gold_paragraph"] == pytest.approx(1 / 3)
    assert metrics["answered"] == pytest.approx(2 / 3)


def test_short_answers_are_scored_with_squad_em_and_f1_per_type() -> None:
    gold = {unit_key("a.txt", 1): 1}

    def asked(question: str, answers: tuple[str, ...], short: str | None) -> Outcome:
        return Outcome(
            question, question, gold, ("a.txt#1",), 1.0, answers, "A sentence.", "a.txt#1",
            short_type=short_answer_type(question), short_answer=short,
        )  # fmt: skip

    outcomes = [
        asked("When was it built?", ("1835",), "1835"),  # exact
        asked("When was it automated?", ("in 1996",), "1996"),  # F1 2/3, not exact
        asked("How many steps are there?", ("163",), None),  # no short answer: 0
        asked("Who opened the café?", ("Josée Lefèvre",), "the Josée Lefèvre"),  # article dropped
        asked("Why was it restored?", ("rust",), None),  # no typed answer: not counted
    ]
    metrics = short_answer_metrics(outcomes)
    assert metrics["short_EM"] == pytest.approx(2 / 4)
    assert metrics["short_F1"] == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    assert metrics["short_EM date"] == pytest.approx(1 / 2)
    assert metrics["short_F1 date"] == pytest.approx((1 + 2 / 3) / 2)
    assert metrics["short_F1 number"] == 0.0
    assert metrics["short_EM person"] == 1.0
    assert metrics["short_F1 money"] is None and metrics["short_F1 place"] is None
    assert summarise(outcomes, "paragraph")["short_F1"] == metrics["short_F1"]
    assert short_answer_counts(outcomes) == {
        "money": 0, "number": 1, "date": 2, "person": 1, "place": 0, "none": 1,
    }  # fmt: skip


def test_summarise_document_level() -> None:
    relevant = {"d1.md": 1, "d2.md": 1}
    ranking = ("d1.md",) + tuple(f"x{i}.md" for i in range(60)) + ("d2.md",)
    deep = ranking[:100]
    metrics = summarise(
        [Outcome("1", "q", relevant, ranking[:50], 5.0, deep_ranking=deep)], "document"
    )
    assert metrics["R@10"] == 0.5
    assert metrics["R@50"] == 0.5
    assert metrics["R@100"] == 1.0
    assert metrics["nDCG@10"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert metrics["MRR@10"] == 1.0
    no_deep = summarise([Outcome("1", "q", relevant, ranking[:50], 5.0)], "document")
    assert no_deep["R@100"] is None


# -- loading sets ------------------------------------------------------------------------------

ARTICLES = [
    (
        "Solar_System",
        [
            "The Sun is the star at the centre of the Solar System. It is a nearly perfect "
            "sphere of hot plasma that radiates energy mainly as visible light.",
            "Jupiter is the fifth planet from the Sun and the largest in the Solar System.\n"
            "It is a gas giant with a mass more than twice that of all other planets combined.",
            "Mars is the fourth planet from the Sun. Its reddish colour comes from iron oxide "
            "on its surface, which is why it is often called the Red Planet.",
        ],
        [
            (0, "What is at the centre of the Solar System?", ["The Sun"]),
            (1, "Which planet is the largest in the Solar System?", ["Jupiter"]),
            (2, "Why is Mars called the Red Planet?", ["iron oxide"]),
        ],
    ),
    (
        "Baking_bread",
        [
            "Bread dough is made from flour, water, salt and yeast. Kneading develops the gluten "
            "network that traps the gas produced by the yeast.",
            "During proofing the yeast ferments sugars and releases carbon dioxide, which makes "
            "the dough rise to about twice its size.",
            "A loaf is baked in a hot oven, usually around 230 degrees Celsius, until the crust "
            "is brown and the loaf sounds hollow when tapped.",
        ],
        [
            (1, "What gas makes bread dough rise?", ["carbon dioxide"]),
            (2, "At what temperature is bread usually baked?", ["230 degrees Celsius", "230"]),
        ],
    ),
]


def write_squad(path: Path, articles: list = ARTICLES) -> Path:  # type: ignore[type-arg]
    data = {
        "version": "1.1",
        "data": [
            {
                "title": title,
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {
                                "id": f"{title}-{n}",
                                "question": question,
                                "answers": [{"text": a, "answer_start": 0} for a in answers],
                            }
                            for n, (index, question, answers) in enumerate(questions)
                            if index == i
                        ],
                    }
                    for i, context in enumerate(contexts)
                ],
            }
            for title, contexts, questions in articles
        ],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


CORPUS = {
    "101": (
        "Vitamin D and bone density",
        "Vitamin D supplements increase bone mineral density in elderly women with osteoporosis.",
    ),
    "102": (
        "Aspirin after heart attack",
        "Daily low-dose aspirin reduces the risk of a second myocardial infarction.",
    ),
    "103": (
        "Sleep and memory",
        "Sleep after learning consolidates declarative memory in the hippocampus.",
    ),
    "104": (
        "Coffee consumption",
        "Moderate coffee drinking is not associated with higher mortality.",
    ),
    "105": ("#Hashtags in medicine", "Social media hashtags spread health information quickly."),
    "106": (
        "Exercise and depression",
        "Aerobic exercise lowers symptoms of depression in randomised trials.",
    ),
}
QUERIES = {
    "q1": "Vitamin D improves bone density in older women.",
    "q2": "Aspirin prevents a second heart attack.",
    "q3": "Sleep helps memory consolidation.",
    "q4": "A query without judgements.",
}
QRELS = "query-id\tcorpus-id\tscore\nq1\t101\t1\nq2\t102\t1\nq3\t103\t1\nq3\t999\t1\nq1\t104\t0\n"


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": key, "title": title, "text": text}) + "\n"
            for key, (title, text) in CORPUS.items()
        ),
        encoding="utf-8",
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": key, "text": text}) + "\n" for key, text in QUERIES.items()),
        encoding="utf-8",
    )
    (folder / "qrels" / "test.tsv").write_text(QRELS, encoding="utf-8")
    return folder


def test_load_squad_maps_each_context_to_its_paragraph(tmp_path: Path) -> None:
    eval_set = load_squad(write_squad(tmp_path / "tiny.json"))
    assert [d.filename for d in eval_set.documents] == ["Solar_System.txt", "Baking_bread.txt"]
    solar = eval_set.documents[0]
    assert "\n" not in solar.paragraphs[1]  # newlines inside a context are normalised
    assert solar.text == "\n\n".join(solar.paragraphs) + "\n"
    by_id = {q.qid: q for q in eval_set.questions}
    assert dict(by_id["Solar_System-2"].relevant) == {"Solar_System.txt#3": 1}
    assert by_id["Baking_bread-1"].answers == ("230 degrees Celsius", "230")
    assert load_eval_set(tmp_path / "tiny.json").format == "squad"


def test_load_beir_reads_graded_qrels_of_the_split(tmp_path: Path) -> None:
    eval_set = load_beir(write_beir(tmp_path / "beir"), "test")
    assert [q.qid for q in eval_set.questions] == ["q1", "q2", "q3"]  # q4 has no judgements
    assert dict(eval_set.questions[0].relevant) == {"101.md": 1}  # score 0 is not relevant
    assert eval_set.warnings == ["1 qrels rows name documents not in the corpus"]
    assert load_eval_set(tmp_path / "beir").format == "beir"
    with pytest.raises(EvalSetError, match="splits here: test"):
        load_beir(tmp_path / "beir", "train")


def test_beir_markdown_keeps_the_title_and_escapes_block_syntax() -> None:
    text = beir_markdown('A "quoted": title', "# not a heading\n  spread   out")
    assert text == '---\ntitle: "A \\"quoted\\": title"\n---\n\n\\# not a heading spread out\n'
    assert beir_markdown("Only a title", "").endswith("\n\nOnly a title\n")


# -- end to end --------------------------------------------------------------------------------


def test_squad_eval_end_to_end(tmp_path: Path, embedder: Embedder) -> None:
    eval_set = load_squad(write_squad(tmp_path / "tiny.json"))
    settings = Settings(index=tmp_path / "index")
    report = evaluate(eval_set, settings, list(MODES), embedder=embedder)
    assert [run.mode for run in report.runs] == list(MODES)
    hybrid = report.runs[0].metrics()
    assert hybrid["R@5"] == 1.0
    assert hybrid["R@1"] is not None and hybrid["R@1"] >= 0.8
    assert hybrid["answer_accuracy"] is not None and hybrid["answer_accuracy"] >= 0.6
    data = json.loads(json.dumps(report.to_dict()))
    assert data["dataset"]["questions_evaluated"] == 5
    assert data["index"]["embedded"] > 0
    assert set(data["modes"]) == set(MODES)
    assert data["modes"]["hybrid"]["latency_ms"]["p95"] > 0
    assert "| R@1 |" in markdown_summary(data)
    assert "| short_F1 |" in markdown_summary(data)
    assert data["modes"]["hybrid"]["short_answer_questions"]["none"] == 5

    # A re-run re-chunks with the current code but embeds nothing new.
    again = evaluate(eval_set, settings, ["bm25"], embedder=embedder, limit=2)
    assert not again.build.up_to_date
    assert again.build.embedded == 0 and again.build.reused_embeddings > 0
    assert again.questions == 2
    kept = evaluate(eval_set, settings, ["bm25"], embedder=embedder, limit=1, reuse_index=True)
    assert kept.build.up_to_date


def test_squad_eval_fails_loudly_when_paragraphs_do_not_line_up(
    tmp_path: Path, embedder: Embedder
) -> None:
    title, contexts, questions = ARTICLES[0]
    # A short line without a full stop reads as a heading, so numbering would shift.
    articles = [(title, [contexts[0], "Further reading", contexts[1]], questions[:1])]
    eval_set = load_squad(write_squad(tmp_path / "bad.json", articles))
    with pytest.raises(EvalSetError, match="paragraph"):
        evaluate(eval_set, Settings(index=tmp_path / "index"), ["bm25"], embedder=embedder)


def test_beir_eval_end_to_end(tmp_path: Path, embedder: Embedder) -> None:
    eval_set = load_beir(write_beir(tmp_path / "beir"), "test")
    report = evaluate(eval_set, Settings(index=tmp_path / "index"), ["hybrid"], embedder=embedder)
    assert report.eval_set.warnings == ["1 qrels rows name documents not in the corpus"]
    metrics = report.runs[0].metrics()
    assert metrics["R@10"] == 1.0
    assert metrics["nDCG@10"] is not None and metrics["nDCG@10"] >= 0.9
    assert metrics["R@100"] == 1.0  # from Searcher.rank, past the API's k
    data = report.to_dict()
    assert data["dataset"]["level"] == "document"
    assert data["modes"]["hybrid"]["questions"] == 3


def test_cli_eval_on_tiny_squad(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "load_embedder", lambda *args, **kwargs: embedder)
    monkeypatch.setattr(retrieval, "load_embedder", lambda *args, **kwargs: embedder)
    squad = write_squad(tmp_path / "tiny.json")
    common = ["eval", str(squad), "--cache", str(tmp_path / "cache"), "--limit", "3"]
    runner = CliRunner()

    result = runner.invoke(main, [*common, "--json", "--output", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["dataset"]["questions_evaluated"] == 3
    assert list(data["modes"]) == ["hybrid"]
    assert data["command"].startswith("paracite")
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert data["index"]["sentence_vectors"] == "standalone"
    assert data["settings"]["answer_threshold"] == 0.35

    result = runner.invoke(main, [*common, "--json", "--sentence-vectors", "in-context"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["index"]["sentence_vectors"] == "in-context"
    assert data["settings"]["answer_threshold"] == 0.31

    details = tmp_path / "details.jsonl"
    options = ["--mode", "all", "--output", str(tmp_path / "r.md"), "--details", str(details)]
    result = runner.invoke(main, [*common, *options])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    assert [row["mode"] for row in rows] == ["hybrid"] * 3 + ["bm25"] * 3 + ["dense"] * 3
    assert {"gold_rank", "answer", "answer_correct", "top"} <= set(rows[0])
    assert "hybrid" in result.output and "bm25" in result.output and "MRR@10" in result.output
    assert "| metric | hybrid | bm25 | dense |" in (tmp_path / "r.md").read_text()

    result = runner.invoke(main, ["eval", str(tmp_path / "beir-missing"), "--format", "beir"])
    assert result.exit_code == 2  # click's usage error, not a crash
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "does not exist" in result.output

    not_beir = tmp_path / "not-beir"
    not_beir.mkdir()
    result = runner.invoke(main, ["eval", str(not_beir), "--format", "beir"])
    assert result.exit_code == 1, result.output  # a domain error: one line, no traceback
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1


def test_withheld_gold_eval_asks_each_question_without_its_paragraph(
    tmp_path: Path, embedder: Embedder
) -> None:
    eval_set = load_squad(write_squad(tmp_path / "tiny.json"))
    settings = Settings(index=tmp_path / "index")
    report = evaluate(eval_set, settings, ["hybrid"], embedder=embedder, withhold_gold=True)
    outcomes = report.runs[0].outcomes
    assert all(outcome.answered_withheld is not None for outcome in outcomes)
    metrics = report.runs[0].metrics()
    withheld = metrics["answered_withheld"]
    assert withheld == sum(bool(o.answered_withheld) for o in outcomes) / len(outcomes)
    plain = evaluate(eval_set, settings, ["hybrid"], embedder=embedder, limit=1)
    assert plain.runs[0].metrics()["answered_withheld"] is None  # not asked: not reported

    # What withholding does: the gold paragraph is never offered, the rest of its article is.
    searcher = Searcher.open(settings.index, embedder)
    try:
        question = eval_set.questions[1]  # Jupiter, the Solar System's second paragraph
        (gold,) = question.relevant
        doc_id, _, number = gold.rpartition("#")
        asked = searcher.ask(question.text, 5, withhold=[(doc_id, int(number))])
    finally:
        searcher.close()
    units = [unit_key(hit.passage.doc_id, hit.passage.paragraph) for hit in asked.hits]
    assert gold not in units and f"{doc_id}#1" in units
    assert asked.answer is None or unit_key(asked.answer.doc_id, asked.answer.paragraph) != gold


def test_summarise_reports_the_answered_rate_with_gold_withheld() -> None:
    gold = {unit_key("a.txt", 1): 1}
    outcomes = [
        Outcome("1", "q1", gold, ("a.txt#1",), 1.0, ("x",), "x", "a.txt#1", answered_withheld=True),
        Outcome(
            "2", "q2", gold, ("a.txt#1",), 1.0, ("x",), "x", "a.txt#1", answered_withheld=False
        ),
        Outcome("3", "q3", gold, ("a.txt#1",), 1.0, ("x",), None, None, answered_withheld=False),
    ]
    assert summarise(outcomes, "paragraph")["answered_withheld"] == pytest.approx(1 / 3)
