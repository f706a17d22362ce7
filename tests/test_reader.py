"""The reader (PARACITE_READER): the bundled model fine-tuned to read a question and a
sentence together, exported from the shipped updates, moving the answer and joining the
answerability decision."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from indexer import onnx_export
from indexer.answerability import MAX_CHOICE_MARGIN, confidence, evidence_logit
from indexer.embedding import Embedder
from indexer.models import NOT_ANSWERED_MESSAGE
from indexer.onnx_export import LOW_RANK_SCALE, merge_adapter
from indexer.reader import (
    ALWAYS,
    READER_ADAPTER,
    READER_CANDIDATES,
    READER_CLOSE_MARGIN,
    READER_DECISION_MARGIN,
    Reader,
    WhenToRead,
    is_question,
    load_reader,
    reader_exported,
    stacked_confidence,
)
from indexer.retrieval import AnswerModels, Searcher
from indexer.settings import Settings

QUESTION = "Why does Kim Jong Un distrust the United States?"
OFF_TOPIC = "What is the boiling point of liquid nitrogen in kelvin?"


class FixedReader:
    """Stands in for the reader: a given logit for sentences holding `favoured`, another
    for the rest; remembers what it was asked to read."""

    def __init__(self, favoured: str, high: float, low: float) -> None:
        self.favoured = favoured
        self.high = high
        self.low = low
        self.read: list[list[str]] = []

    def logits(self, question: str, sentences: Sequence[str]) -> np.ndarray:
        self.read.append(list(sentences))
        return np.array([self.high if self.favoured in s else self.low for s in sentences])


@pytest.fixture(scope="module")
def reader(export_cache: Path) -> Reader:
    return load_reader(Settings().cache_dir)


@pytest.fixture
def plain(seed_index: Path, embedder: Embedder) -> Iterator[Searcher]:
    opened = Searcher.open(seed_index, embedder)
    yield opened
    opened.close()


def with_reader(
    seed_index: Path,
    embedder: Embedder,
    reader: object,
    min_confidence: float | None = None,
    read_when: WhenToRead = ALWAYS,
) -> Searcher:
    return Searcher.open(
        seed_index,
        embedder,
        reader=reader,  # type: ignore[arg-type]
        min_confidence=min_confidence,
        read_when=read_when,
    )


def test_merge_adapter_adds_the_low_rank_updates_and_sets_the_rest() -> None:
    torch.manual_seed(3)
    config = BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
    )
    model = BertModel(config)
    before = model.encoder.layer[0].attention.self.query.weight.detach().clone()
    rng = np.random.default_rng(0)
    down = rng.normal(size=(2, 8)).astype(np.float16)
    up = rng.normal(size=(8, 2)).astype(np.float16)
    bias = rng.normal(size=8).astype(np.float32)
    norm = rng.normal(size=8).astype(np.float32)
    head_weight = rng.normal(size=(1, 8)).astype(np.float32)
    arrays = {
        "encoder.layer.0.attention.self.query.down": down,
        "encoder.layer.0.attention.self.query.up": up,
        "encoder.layer.0.attention.self.query.base.bias": bias,
        "embeddings.LayerNorm.weight": norm,
        "head.weight": head_weight,
        "head.bias": np.array([0.5], dtype=np.float32),
    }
    head = merge_adapter(model, arrays)
    query = model.encoder.layer[0].attention.self.query
    expected = before.numpy() + LOW_RANK_SCALE * (up.astype(np.float32) @ down.astype(np.float32))
    np.testing.assert_allclose(query.weight.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(query.bias.detach().numpy(), bias)
    np.testing.assert_array_equal(model.embeddings.LayerNorm.weight.detach().numpy(), norm)
    np.testing.assert_array_equal(head.weight.detach().numpy(), head_weight)
    assert head.bias.item() == 0.5


def test_the_shipped_updates_are_small_enough_to_keep_in_the_repository() -> None:
    assert READER_ADAPTER.is_file()
    assert READER_ADAPTER.stat().st_size < 3_000_000
    with np.load(READER_ADAPTER) as stored:
        names = set(stored.files)
    assert {"head.weight", "head.bias"} <= names
    assert any(name.endswith(".down") for name in names)


def test_the_reader_reads_answering_sentences_above_the_others(reader: Reader) -> None:
    cases = [
        (
            "How many documents from Pyongyang were examined?",
            "During this period, 54 documents from Pyongyang were examined by the team.",
            "The documents were kept in a library in Seoul.",
        ),
        (
            "Who opened the café?",
            "Its owner, Josée Lefèvre, opened it in 1962.",
            "The café stands opposite the railway station.",
        ),
        (
            "How much did the lantern room repair cost?",
            "The repair cost 41,000 euros.",
            "The glazing was replaced with laminated glass panels made in Brest.",
        ),
        (
            "When was the lighthouse built?",
            "The lighthouse at Pointe Saint-Mathieu was built in 1835.",
            "The lighthouse is painted red and white.",
        ),
    ]
    for question, answering, other in cases:
        logits = reader.logits(question, [other, answering])
        assert logits.shape == (2,)
        assert logits[1] > logits[0], question
    assert reader.logits("Who?", []).shape == (0,)


def test_the_reader_is_exported_once_and_then_reused(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_second_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "_export_reader", no_second_export)
    again = load_reader(Settings().cache_dir)
    question, sentence = "Who opened the café?", "Its owner, Josée Lefèvre, opened it in 1962."
    assert again.logits(question, [sentence]) == pytest.approx(reader.logits(question, [sentence]))


def test_a_sentence_the_reader_reads_as_answering_becomes_the_answer(
    plain: Searcher, seed_index: Path, embedder: Embedder
) -> None:
    without = plain.ask(QUESTION, 5)
    assert without.answer is not None
    # The runner-up among the sentences the reader reads (best first by the choice model).
    neutral = FixedReader("", high=0.0, low=0.0)
    searcher = with_reader(seed_index, embedder, neutral)
    try:
        searcher.ask(QUESTION, 5)
    finally:
        searcher.close()
    [candidates] = neutral.read
    assert candidates[0] == without.answer.text
    runner_up = candidates[1]
    fake = FixedReader(runner_up, high=40.0, low=-40.0)
    searcher = with_reader(seed_index, embedder, fake)
    try:
        result = searcher.ask(QUESTION, 5)
    finally:
        searcher.close()
    assert fake.read and len(fake.read[0]) <= READER_CANDIDATES
    assert result.assessment is not None
    assert result.assessment.candidate.text == runner_up
    assert result.assessment.reader_logit == 40.0
    assert result.assessment.confidence == pytest.approx(
        stacked_confidence(evidence_logit(result.assessment.evidence), 40.0)
    )


def test_a_reader_that_reads_no_answer_turns_the_answer_down(
    seed_index: Path, embedder: Embedder
) -> None:
    searcher = with_reader(seed_index, embedder, FixedReader("", high=-60.0, low=-60.0))
    try:
        result = searcher.ask(QUESTION, 5)
    finally:
        searcher.close()
    assert result.answer is None
    assert result.no_answer_reason == NOT_ANSWERED_MESSAGE
    assert not any(hit.cited for hit in result.hits)


def test_the_answer_is_one_the_reader_read_even_when_it_reads_none_as_answering(
    seed_index: Path, embedder: Embedder
) -> None:
    """Sentences past the reader's candidates are not read; when every read logit is low,
    they must not overtake the read ones for having been skipped."""
    fake = FixedReader("", high=-60.0, low=-60.0)
    searcher = with_reader(seed_index, embedder, fake, min_confidence=0.0)
    try:
        result = searcher.ask(QUESTION, 5)
    finally:
        searcher.close()
    assert result.answer is not None and result.assessment is not None
    [read] = fake.read
    assert len(read) == READER_CANDIDATES
    assert result.answer.text in read
    assert result.assessment.reader_logit == -60.0


def test_the_reader_does_not_read_off_topic_questions_or_later_pages(
    seed_index: Path, embedder: Embedder
) -> None:
    fake = FixedReader("", high=40.0, low=40.0)
    searcher = with_reader(seed_index, embedder, fake)
    try:
        off_topic = searcher.ask(OFF_TOPIC, 5)
        searcher.ask(QUESTION, 5, offset=5)
        searcher.search(QUESTION, 5)
    finally:
        searcher.close()
    assert off_topic.answer is None
    assert fake.read == []


def test_with_the_real_reader_the_seed_questions_keep_their_answers(
    seed_index: Path, embedder: Embedder, reader: Reader
) -> None:
    searcher = Searcher.open(seed_index, embedder, reader=reader)
    try:
        result = searcher.ask("How many documents from Pyongyang were examined?", 5)
        off_topic = searcher.ask(OFF_TOPIC, 5)
    finally:
        searcher.close()
    assert result.answer is not None
    assert "54 documents" in result.answer.text
    assert result.answer.short is not None and result.answer.short.text == "54"
    assert result.assessment is not None and result.assessment.reader_logit is not None
    assert 0.0 <= result.answer.confidence <= 1.0
    assert off_topic.answer is None


def test_the_setting_chooses_when_the_reader_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().reader == "auto"
    for spelled, mode in [("on", "on"), ("OFF", "off"), ("true", "on"), ("0", "off")]:
        monkeypatch.setenv("PARACITE_READER", spelled)
        assert Settings().reader == mode
    monkeypatch.setenv("PARACITE_READER", "sometimes")
    with pytest.raises(ValueError, match="reader"):
        Settings()


def test_auto_reads_only_questions_whose_best_candidates_are_close(
    seed_index: Path, embedder: Embedder, plain: Searcher
) -> None:
    """Read below a margin, a question whose best two candidates lead each other by at
    least that margin in choice score is answered as without the reader; by less, it is read
    and the reader joins the confidence."""
    without = plain.ask(QUESTION, 5)
    assert without.assessment is not None
    lead = without.assessment.evidence.choice_margin  # the best candidate's lead
    assert 0.0 < lead < MAX_CHOICE_MARGIN
    fake = FixedReader("", high=-60.0, low=-60.0)
    clear = with_reader(seed_index, embedder, fake, 0.0, WhenToRead(lead, 0.0))
    close = with_reader(seed_index, embedder, fake, 0.0, WhenToRead(lead + 1e-6, 0.0))
    try:
        unread = clear.ask(QUESTION, 5)
        assert fake.read == []
        read = close.ask(QUESTION, 5)
        assert len(fake.read) == 1
    finally:
        clear.close()
        close.close()
    assert unread.answer == without.answer
    assert unread.assessment is not None and unread.assessment.reader_logit is None
    assert unread.assessment.confidence == confidence(unread.assessment.evidence)
    assert read.assessment is not None and read.assessment.reader_logit == -60.0
    assert read.assessment.confidence < unread.assessment.confidence


def test_auto_reads_the_answer_alone_when_the_decision_is_close(
    seed_index: Path, embedder: Embedder, plain: Searcher
) -> None:
    """Of a question whose choice is clear, the reader reads only the answer, and only when
    the answerability log-odds are within the decision margin of the minimum confidence's;
    a low logit then turns the answer down."""
    without = plain.ask(QUESTION, 5)
    assert without.answer is not None and without.assessment is not None
    minimum = 0.5  # log-odds 0
    distance = abs(evidence_logit(without.assessment.evidence))
    fake = FixedReader("", high=-60.0, low=-60.0)
    far = with_reader(seed_index, embedder, fake, minimum, WhenToRead(0.0, distance))
    near = with_reader(seed_index, embedder, fake, minimum, WhenToRead(0.0, distance + 1e-6))
    try:
        unread = far.ask(QUESTION, 5)
        assert fake.read == []
        read = near.ask(QUESTION, 5)
    finally:
        far.close()
        near.close()
    assert fake.read == [[without.answer.text]]
    assert unread.assessment is not None and unread.assessment.reader_logit is None
    assert unread.assessment.confidence == confidence(without.assessment.evidence)
    assert read.assessment is not None and read.assessment.reader_logit == -60.0
    assert read.answer is None and read.no_answer_reason == NOT_ANSWERED_MESSAGE


def test_the_settings_open_a_searcher_that_reads_as_they_say(
    seed_index: Path, embedder: Embedder
) -> None:
    reader = FixedReader("", high=0.0, low=0.0)
    models = AnswerModels(reader=reader)  # type: ignore[arg-type]
    expected = {
        "auto": WhenToRead(READER_CLOSE_MARGIN, READER_DECISION_MARGIN),
        "on": WhenToRead(math.inf, math.inf),
    }
    for mode, read_when in expected.items():
        settings = Settings(index=seed_index, reader=mode)  # type: ignore[arg-type]
        searcher = Searcher.from_settings(settings, embedder=embedder, models=models)
        try:
            assert searcher.reader is reader
            assert searcher.read_when == read_when
        finally:
            searcher.close()


def test_the_cli_says_once_that_the_first_question_waits_for_the_reader_export(
    reader: Reader, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli import _note_reader_export

    assert reader_exported(Settings().cache_dir)  # the fixture exported it
    assert not reader_exported(tmp_path)
    _note_reader_export(Settings(cache_dir=tmp_path))
    assert "preparing the reader for its first use" in capsys.readouterr().err
    for settings in (Settings(), Settings(cache_dir=tmp_path, reader="off")):
        _note_reader_export(settings)
        assert capsys.readouterr().err == ""


def test_only_questions_are_read(seed_index: Path, embedder: Embedder) -> None:
    """The reader was trained on questions: a claim or a keyword query is answered by the
    answerability model alone, whatever the mode."""
    assert is_question("Who ruled the duchy of Normandy")
    assert is_question("The Normans were in what country?")
    assert not is_question("Kim Jong Un distrusts the United States.")
    assert not is_question("Howard Hughes biography")
    fake = FixedReader("", high=-60.0, low=-60.0)
    searcher = with_reader(seed_index, embedder, fake, 0.0)
    try:
        claim = searcher.ask("Kim Jong Un distrusts the United States.", 5)
        question = searcher.ask(QUESTION, 5)
    finally:
        searcher.close()
    assert claim.assessment is not None and claim.assessment.reader_logit is None
    assert claim.answer is not None
    assert question.assessment is not None and question.assessment.reader_logit == -60.0
    assert len(fake.read) == 1
