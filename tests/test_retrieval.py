"""Questions about the seeds land on the right paragraph, with an honest answer or none."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
import threadpoolctl

from indexer import retrieval
from indexer.embedding import Embedder
from indexer.errors import IndexNotFound, InvalidQuery, ModelMismatch
from indexer.models import NO_ANSWER_MESSAGE
from indexer.retrieval import MAX_K, MAX_OFFSET, AnswerModels, FusionWeights, Scope, Searcher
from indexer.settings import Settings

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

    from indexer.reader import Reader

PLAIN_SEED = "004_fc6fad951788ea23.txt"
MARKDOWN_SEED = "000_230d891a6c421cf7.txt"


def _paragraph_text(searcher: Searcher, doc_id: str, number: int) -> str:
    view = searcher.document(doc_id)
    return next(b.text for b in view.blocks if b.number == number)


def test_author_question_cites_the_paragraph_naming_the_author(searcher: Searcher) -> None:
    result = searcher.ask("Who wrote the article about Trump's tough love on Kim?")
    assert result.answer is not None
    assert result.answer.doc_id == MARKDOWN_SEED
    assert "Imran Khalid" in _paragraph_text(searcher, MARKDOWN_SEED, result.answer.paragraph)


def test_the_author_note_answers_who_wrote_even_when_it_was_not_a_candidate(
    seed_index: Path, embedder: Embedder
) -> None:
    """With one candidate per signal the author note is not among them: it is fused too."""
    narrow = Searcher(seed_index, embedder, candidates_per_signal=1)
    try:
        result = narrow.ask("Who wrote about Kim Jong Un's policy toward the United States?", 1)
        assert result.answer is not None
        assert result.answer.doc_id == PLAIN_SEED
        assert "Hyeong Jung PARK" in _paragraph_text(narrow, PLAIN_SEED, result.answer.paragraph)
    finally:
        narrow.close()


def test_count_question_cites_the_paragraph_saying_54(searcher: Searcher) -> None:
    result = searcher.ask("How many documents were examined between 2024 and March 2025?")
    assert result.answer is not None
    assert result.answer.doc_id == PLAIN_SEED
    assert "54 documents" in result.answer.text
    top = result.hits[0].passage
    assert (top.doc_id, top.paragraph) == (PLAIN_SEED, 6)


def test_distrust_question_answers_from_the_eai_paper(searcher: Searcher) -> None:
    result = searcher.ask("Why does Kim Jong Un distrust the United States?")
    assert result.answer is not None
    assert result.answer.doc_id == PLAIN_SEED
    assert "trust" in result.answer.text


def test_answer_span_points_at_the_sentence_in_the_source(searcher: Searcher) -> None:
    result = searcher.ask("What does the Acheson Line symbolize for South Koreans?")
    answer = result.answer
    assert answer is not None and "Acheson" in answer.text
    source = searcher.document(answer.doc_id).source
    raw = source[answer.char_start : answer.char_end]
    assert "Acheson Line" in raw and "symbolizes a deeply rooted wartime trauma" in raw
    hit = result.hits[answer.passage - 1]
    assert hit.best_sentence is not None
    assert hit.passage.text[hit.best_sentence.start : hit.best_sentence.end] == answer.text


def test_off_topic_question_gets_no_answer_but_still_lists_passages(searcher: Searcher) -> None:
    result = searcher.ask("What is the boiling point of mercury?")
    assert result.answer is None
    assert result.no_answer_reason == NO_ANSWER_MESSAGE
    assert result.hits


@pytest.mark.parametrize(
    "question",
    ["How do I bake sourdough bread?", "Who won the 1998 football World Cup?", "x" * 1000, "■"],
)
def test_other_off_topic_questions_get_no_answer(searcher: Searcher, question: str) -> None:
    assert searcher.ask(question).answer is None


def test_lexical_search_finds_a_rare_name(searcher: Searcher) -> None:
    for mode in ("hybrid", "bm25"):
        top = searcher.search("Acheson Line", mode=mode).hits[0]  # type: ignore[arg-type]
        assert top.passage.doc_id == MARKDOWN_SEED and "Acheson" in top.passage.text


def test_search_returns_passages_without_choosing_an_answer(searcher: Searcher) -> None:
    result = searcher.search("Vladivostok summit", k=3)
    assert result.answer is None and result.no_answer_reason is None
    assert len(result.hits) == 3
    assert [h.rank for h in result.hits] == [1, 2, 3]
    assert "Vladivostok" in result.hits[0].passage.text


def test_by_default_search_gives_the_passages_ask_gives_and_neither_a_ranking(
    searcher: Searcher,
) -> None:
    """ask is search plus the choice of an answer; a ranking comes only with ranked=."""
    question = RANKING_QUESTIONS[1]
    searched, asked = searcher.search(question), searcher.ask(question)
    assert len(asked.hits) == 5
    assert [h.passage for h in searched.hits] == [h.passage for h in asked.hits]
    assert asked.ranking == searched.ranking == ()


@pytest.mark.parametrize(
    ("query", "k", "message"),
    [
        ("", 5, "empty"),
        ("   ", 5, "empty"),
        ("x" * 1001, 5, "1000"),
        ("ok", 0, "k"),
        ("ok", 51, "k"),
        (None, 5, "^the question is empty$"),  # not text at all (a caller's mistake)
        ("trust \ud800", 5, r"^the question is not valid text \(not valid Unicode\)$"),
    ],
)
def test_invalid_questions_are_refused(
    searcher: Searcher, query: str, k: int, message: str
) -> None:
    with pytest.raises(InvalidQuery, match=message):
        searcher.ask(query, k)


RANKING_QUESTIONS = (
    "How many documents were examined between 2024 and March 2025?",
    "Why does Kim Jong Un distrust the United States?",
    "What does the Acheson Line symbolize for South Koreans?",
)


def test_few_candidates_keep_the_scores_and_the_top_passage_of_every_candidate(
    searcher: Searcher, seed_index: Path, embedder: Embedder
) -> None:
    """With every passage a candidate the ranking is exact; with 3 per signal, the passages
    fused keep their exact scores, and the best passage stays first. rank() takes at least
    `depth` candidates per signal, so asked for every passage it is exact again."""
    passages = searcher.stats().passages
    assert retrieval.CANDIDATES >= passages
    limited = Searcher(seed_index, embedder, candidates_per_signal=3)
    try:
        for question in RANKING_QUESTIONS:
            exact = {p.row: p.score for p in searcher.rank(question, "hybrid", passages)}
            assert len(exact) == passages
            few = limited.rank(question, "hybrid", 3)
            assert len(few) == 3
            for passage in few:
                assert passage.score == pytest.approx(exact[passage.row], rel=1e-6)
            assert few[0].row == max(exact, key=lambda row: exact[row])
            assert limited.ask(question).hits[0].passage == searcher.ask(question).hits[0].passage
            deep = limited.rank(question, "hybrid", passages)
            assert [p.row for p in deep] == list(exact)
    finally:
        limited.close()


def test_rank_orders_passages_as_search_does(searcher: Searcher) -> None:
    for question in RANKING_QUESTIONS:
        ranked = searcher.rank(question, "hybrid", 10)
        hits = searcher.search(question, k=10).hits
        assert [p.doc_id for p in ranked] == [h.passage.doc_id for h in hits]
        assert [p.score for p in ranked] == pytest.approx([h.score for h in hits])


def test_rank_is_hybrid_by_default_and_keeps_to_the_scope(searcher: Searcher) -> None:
    question = RANKING_QUESTIONS[1]
    assert searcher.rank(question, depth=10) == searcher.rank(question, "hybrid", 10)
    scoped = searcher.rank(question, depth=50, scope=Scope(doc=MARKDOWN_SEED))
    assert scoped
    assert {p.doc_id for p in scoped} == {MARKDOWN_SEED}
    assert len(searcher.rank(question, depth=1)) == 1
    with pytest.raises(InvalidQuery, match="^depth must be at least 1$"):
        searcher.rank(question, depth=0)


def test_open_gives_the_searcher_every_option_it_was_given(
    seed_index: Path, embedder: Embedder
) -> None:
    """Searcher.open is the constructor the CLI and the server use: nothing it is given is
    dropped on the way (the reranker is not called until a question is asked)."""
    weights = FusionWeights(passage=0.5, sentence=0.2, lexical=0.1, sentence_lexical=0.2)
    reranker = cast("CrossEncoder", object())
    opened = Searcher.open(
        seed_index,
        embedder,
        0.5,
        weights,
        min_confidence=0.25,
        reranker=reranker,
        reranker_depth=9,
    )
    try:
        assert opened.embedder is embedder
        assert (opened.answer_threshold, opened.weights) == (0.5, weights)
        assert opened.min_confidence == 0.25
        assert (opened.reranker, opened.reranker_depth) == (reranker, 9)
    finally:
        opened.close()


def test_a_withheld_paragraph_is_never_offered_and_the_rest_still_is(
    searcher: Searcher,
) -> None:
    question = "How many documents were examined between 2024 and March 2025?"
    first = searcher.ask(question, 5).hits[0].passage
    withheld = (first.doc_id, first.paragraph)
    asked = searcher.ask(question, 5, withhold=[withheld])
    offered = [(hit.passage.doc_id, hit.passage.paragraph) for hit in asked.hits]
    assert len(offered) == 5
    assert withheld not in offered
    assert first.doc_id in {doc_id for doc_id, _ in offered}
    assert asked.answer is None or (asked.answer.doc_id, asked.answer.paragraph) != withheld
    searched = searcher.search(question, 5, withhold=[withheld])
    assert [hit.passage for hit in searched.hits] == [hit.passage for hit in asked.hits]
    # Every other passage can still be offered.
    every = searcher.search(question, MAX_K).hits
    assert len(every) < MAX_K
    rest = searcher.search(question, MAX_K, withhold=[withheld]).hits
    assert {hit.passage for hit in rest} == {
        hit.passage for hit in every if (hit.passage.doc_id, hit.passage.paragraph) != withheld
    }


def test_an_embedder_of_another_model_or_backend_is_refused(
    seed_index: Path, embedder: Embedder
) -> None:
    other = replace(embedder, backend="torch")
    with pytest.raises(ModelMismatch) as refused:
        Searcher.open(seed_index, other)
    assert str(refused.value) == (
        f"index was built with {embedder.model_name!r} ({embedder.backend}), "
        f"not {embedder.model_name!r} (torch)"
    )


def test_without_an_embedder_the_index_model_is_loaded_for_questions(
    seed_index: Path, searcher: Searcher
) -> None:
    opened = Searcher.open(seed_index)
    try:
        assert (opened.embedder.model_name, opened.embedder.backend) == (
            searcher.manifest.model,
            searcher.manifest.backend,
        )
        question = RANKING_QUESTIONS[0]
        assert opened.ask(question).hits[0].passage == searcher.ask(question).hits[0].passage
    finally:
        opened.close()


class ReversingReranker:
    """A cross-encoder stand-in that prefers the passages fusion ranked lowest."""

    def predict(self, pairs: list[tuple[str, str]], **options: object) -> list[float]:
        return [float(position) for position in range(len(pairs))]


def test_a_reranker_decides_the_order_of_the_passages_it_reads(
    seed_index: Path, embedder: Embedder, searcher: Searcher
) -> None:
    question = RANKING_QUESTIONS[1]
    fused = [hit.passage for hit in searcher.search(question, k=4).hits]
    reranker = cast("CrossEncoder", ReversingReranker())
    reranked = Searcher.open(seed_index, embedder, reranker=reranker, reranker_depth=4)
    try:
        hits = reranked.search(question, k=4).hits
        assert [hit.passage for hit in hits] == fused[::-1]
        # The scores keep their places: the best score goes to the reranker's first.
        assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    finally:
        reranked.close()


def _blas_threads() -> list[int]:
    return [
        pool["num_threads"]
        for pool in threadpoolctl.threadpool_info()
        if pool["user_api"] == "blas"
    ]


def test_an_open_searcher_runs_torch_and_blas_on_one_thread_per_question(
    seed_index: Path, embedder: Embedder
) -> None:
    """Questions are answered one per request thread; torch and BLAS must not spread each
    over every core as well (see retrieval._one_thread_per_query)."""
    torch = pytest.importorskip("torch")
    torch_threads = torch.get_num_threads()
    blas_threads = _blas_threads()
    assert blas_threads, "numpy loads a BLAS"
    try:
        torch.set_num_threads(2)
        threadpoolctl.threadpool_limits(limits=2, user_api="blas")
        Searcher.open(seed_index, embedder).close()
        assert torch.get_num_threads() == 1
        assert set(_blas_threads()) == {1}
    finally:
        torch.set_num_threads(torch_threads)
        threadpoolctl.threadpool_limits(limits=max(blas_threads), user_api="blas")


class SteppingClock:
    """perf_counter for retrieval: each reading is a quarter of a second after the last."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        self.now += 0.25
        return self.now


def test_took_ms_is_the_time_the_question_took_in_milliseconds(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrieval, "time", SteppingClock())
    assert searcher.ask(RANKING_QUESTIONS[0]).took_ms == pytest.approx(250.0)


def test_offset_reaches_max_offset_and_no_further(searcher: Searcher) -> None:
    question = RANKING_QUESTIONS[0]
    assert searcher.search(question, 5, offset=MAX_OFFSET).hits == []  # 42 passages
    for offset in (MAX_OFFSET + 1, -1, True, 1.5):
        with pytest.raises(
            InvalidQuery, match=f"^offset must be a whole number from 0 to {MAX_OFFSET}$"
        ):
            searcher.search(question, 5, offset=offset)  # type: ignore[arg-type]


def test_an_unknown_mode_is_refused_naming_the_modes(searcher: Searcher) -> None:
    with pytest.raises(InvalidQuery, match="^mode must be one of hybrid, bm25, dense$"):
        searcher.ask(RANKING_QUESTIONS[0], mode="fuzzy")  # type: ignore[arg-type]


def test_a_scope_without_passages_gets_no_passages_and_says_so_on_the_first_page(
    searcher: Searcher,
) -> None:
    question, empty = RANKING_QUESTIONS[0], Scope(folder="no-such-folder/")
    asked = searcher.ask(question, scope=empty)
    assert (asked.answer, asked.hits, asked.no_answer_reason) == (None, [], NO_ANSWER_MESSAGE)
    assert searcher.ask(question, scope=empty, offset=5).no_answer_reason is None
    searched = searcher.search(question, scope=empty)
    assert (searched.hits, searched.no_answer_reason) == ([], None)


def test_k_and_ranked_reach_past_the_candidates_per_signal(
    seed_index: Path, embedder: Embedder
) -> None:
    narrow = Searcher(seed_index, embedder, candidates_per_signal=1)
    try:
        assert len(narrow.ask(RANKING_QUESTIONS[0], k=5).hits) == 5
        asked = narrow.ask(RANKING_QUESTIONS[0], k=5, ranked=20)
        assert len(asked.hits) == 5
        assert len(asked.ranking) == 20
        assert len(narrow.ask(RANKING_QUESTIONS[0], ranked=1).ranking) == 1
    finally:
        narrow.close()


def test_from_settings_opens_the_index_as_the_settings_configure_answering(
    seed_index: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[Path] = []
    reader = cast("Reader", object())

    def fake_load_reader(cache_dir: Path) -> Reader:
        loaded.append(cache_dir)
        return reader

    monkeypatch.setattr(retrieval, "load_reader", fake_load_reader)
    settings = Settings(
        index=seed_index,
        answer_threshold=0.41,
        answer_confidence=0.3,
        reranker_depth=7,
        reader="on",
    )
    searcher = Searcher.from_settings(settings, embedder=embedder)
    try:
        assert searcher.index_dir == seed_index
        assert (searcher.answer_threshold, searcher.min_confidence) == (0.41, 0.3)
        assert searcher.reranker_depth == 7 and searcher.reranker is None
        assert searcher.reader is reader and loaded == [settings.cache_dir]
    finally:
        searcher.close()

    shared = AnswerModels(reader=reader)
    again = Searcher.from_settings(settings, seed_index, embedder, shared)
    try:
        assert again.reader is reader and loaded == [settings.cache_dir]  # not loaded again
    finally:
        again.close()


def refuse(*_: object) -> None:
    """Stands in for a model loader that must not be called."""
    raise AssertionError("loaded a model that should not have been loaded")


def test_answer_models_load_nothing_unless_the_settings_ask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retrieval, "load_reader", refuse)
    monkeypatch.setattr(retrieval, "load_cross_encoder", refuse)
    assert AnswerModels.load(Settings(reranker=None, reader="off")) == AnswerModels(None, None)


def test_a_missing_index_is_reported_before_any_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrieval, "load_reader", refuse)
    with pytest.raises(IndexNotFound):
        Searcher.from_settings(Settings(index=tmp_path / "nothing", reader="auto"))
