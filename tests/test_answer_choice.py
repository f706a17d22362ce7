"""The right sentence of the right paragraph: money, accented names, sentences after quotes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docx
import pytest
from cache_helpers import built_index, fixture_cache

from indexer.answer import expected_answer_type, has_new_answer_of_type
from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.retrieval import Searcher
from indexer.settings import Settings

DOCUMENTS = {
    "lighthouse.txt": (
        "The Old Lighthouse\n\n"
        "The lighthouse at Pointe Saint-Mathieu was built in 1835 and automated in 1996.\n\n"
        "In 2019 the lantern room was restored. The glazing was replaced with laminated glass "
        "panels made in Brest. The repair cost 41,000 euros. The works took four months.\n"
    ),
    "cafe.txt": (
        "Café de la Gare\n\n"
        "The café stands opposite the railway station and serves breakfast from six o'clock.\n\n"
        "Its owner, Josée Lefèvre, opened it in 1962. She ran it for thirty years.\n"
    ),
}


@pytest.fixture(scope="module")
def searcher(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[Searcher]:
    folder = tmp_path_factory.mktemp("answer-docs")
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    budget = docx.Document()
    budget.add_paragraph("Household budget for the shared flat.")
    table = budget.add_table(rows=4, cols=2)
    for row, cells in enumerate(
        [("Item", "Cost per month"), ("Beans", "£180"), ("Rent", "£1,450"), ("Power", "£95")]
    ):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    budget.add_paragraph("The budget is reviewed every January.")
    budget.save(str(folder / "budget.docx"))
    index_dir = tmp_path_factory.mktemp("answer-index") / "idx"
    built_index(
        fixture_cache(request.config),
        "answer-choice-index",
        index_dir,
        lambda target: build_index(folder, Settings(index=target), embedder=embedder),
    )
    opened = Searcher.open(index_dir, embedder)
    yield opened
    opened.close()


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("How much did the lantern room repair cost?", "The repair cost 41,000 euros."),
        ("Who opened the café?", "Its owner, Josée Lefèvre, opened it in 1962."),
        ("How much do beans cost per month?", "Item: Beans, Cost per month: £180"),
    ],
)
def test_the_answer_is_the_sentence_holding_what_was_asked(
    searcher: Searcher, question: str, answer: str
) -> None:
    result = searcher.ask(question)
    assert result.answer is not None and result.answer.text == answer


def test_seed_sentence_after_a_quoted_abbreviation_is_its_own_answer(
    searcher: Searcher, seed_index: Path, embedder: Embedder
) -> None:
    seeds = Searcher.open(seed_index, embedder)
    try:
        answer = seeds.ask("How many documents from Pyongyang were examined?").answer
    finally:
        seeds.close()
    assert answer is not None
    assert answer.text.startswith("During this period, 54 documents were closely examined")


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How much did the lantern room repair cost?", "money"),
        ("What was the price of a ticket?", "money"),
        ("How much money was spent on the festivities?", "money"),
        ("How much water does the reservoir hold?", "number"),
        ("How many steps lead to the gallery?", "number"),
    ],
)
def test_questions_about_cost_want_an_amount_of_money(question: str, kind: str) -> None:
    assert expected_answer_type(question) == kind


def test_amounts_of_money_and_accented_names_are_recognised() -> None:
    asked = "How much did it cost?"
    for sentence in ("The repair cost 41,000 euros.", "Tickets were £180.", "It took $5 million."):
        assert has_new_answer_of_type("money", sentence, asked), sentence
    assert not has_new_answer_of_type("money", "In 2019 the lantern room was restored.", asked)
    assert has_new_answer_of_type(
        "person", "Its owner, Josée Lefèvre, opened it in 1962.", "Who opened the café?"
    )
    assert not has_new_answer_of_type(
        "person", "Its owner, Josée Lefèvre, opened it.", "Did Josée Lefèvre open it?"
    )
