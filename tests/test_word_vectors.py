"""Static word vectors of the bundled model: near words are near, and they load once."""

from __future__ import annotations

import numpy as np

from indexer.word_vectors import bundled_word_vectors


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
