"""Static word vectors of the bundled model: near words are near, and they load once."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from indexer import word_vectors
from indexer.word_vectors import WordVectors, bundled_word_vectors


def test_words_of_like_meaning_are_nearer_than_unrelated_words() -> None:
    vectors = bundled_word_vectors().vectors(["bought", "purchased", "apple", "founded"])
    cosines = vectors @ vectors.T
    assert cosines[0, 1] > cosines[0, 2]  # bought: purchased before apple
    assert cosines[0, 1] > cosines[0, 3]


def test_each_word_gets_a_unit_row_and_a_word_without_pieces_a_zero_row() -> None:
    vectors = bundled_word_vectors().vectors(["huguenots", "", "huguenots"])
    assert np.linalg.norm(vectors, axis=1).round(4).tolist() == [1.0, 0.0, 1.0]
    assert (vectors[0] == vectors[2]).all()  # several word pieces, one vector


def test_the_bundled_vectors_load_once_per_process() -> None:
    assert bundled_word_vectors() is bundled_word_vectors()


def test_a_question_never_sees_a_word_another_question_is_still_adding() -> None:
    """Two questions at once: while one computes the vector of a word of several pieces, the
    other asks for the same word and must get its vector (a server once answered 500 here)."""
    shared = bundled_word_vectors()
    vectors = WordVectors(shared._units * shared._norms[:, None], shared._tokenizer)
    word = "geopolitical"  # several word pieces
    inside, release = threading.Event(), threading.Event()
    mean = vectors._mean
    calls: list[int] = []

    def first_call_waits(pieces: list[int]) -> np.ndarray:
        calls.append(len(pieces))
        if len(calls) == 1:
            inside.set()
            assert release.wait(30)
        return mean(pieces)

    vectors._mean = first_call_waits  # type: ignore[method-assign]
    rows: list[np.ndarray] = []
    first = threading.Thread(target=lambda: rows.append(vectors.vectors([word])))
    first.start()
    try:
        assert inside.wait(30)
        meanwhile = vectors.vectors([word, "cost"])  # the other question, mid-way
    finally:
        release.set()
        first.join(30)
    assert float(np.linalg.norm(meanwhile[0])) > 0.99
    np.testing.assert_allclose(rows[0][0], meanwhile[0], rtol=1e-6)
    assert float(meanwhile[0] @ vectors.vectors(["cost"])[0]) < 0.99


def test_forgetting_words_keeps_answers_for_questions_under_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = bundled_word_vectors()
    vectors = WordVectors(shared._units * shared._norms[:, None], shared._tokenizer)
    monkeypatch.setattr(word_vectors, "MAX_CACHED_WORDS", 3)
    before = vectors.vectors(["geopolitical", "cost"])
    after = vectors.vectors(["geopolitical", "bought", "purchased", "cost"])
    np.testing.assert_allclose(before[0], after[0], rtol=1e-6)
    np.testing.assert_allclose(before[1], after[3], rtol=1e-6)
