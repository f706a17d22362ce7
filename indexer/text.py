"""Text helpers shared by indexing and querying: sentence spans, lexical terms, hashes."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import Stemmer
import syntok.segmenter as segmenter
from bm25s.stopwords import STOPWORDS_EN

_WORD = re.compile(r"\w+", re.UNICODE)
# A full stop inside closing quotes, then a capitalised word: a sentence ends there even when
# the stop belongs to an abbreviation ('... response to the U.S." During this period, ...').
_QUOTED_STOP = re.compile(r"(?<=[.!?])[\"”’»']+(?=\s+[A-Z])")
_STOPWORDS = frozenset(STOPWORDS_EN) | frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with what which who whom whose when where why "
    "how does did do has have had i you he she we its our your his her them been being "
    "were than so can could would should may might about from".split()
)


# Named in the chunking signature of an index: rename it whenever split_sentences changes
# where sentences end, so that existing indexes are chunked again.
SENTENCE_SPLITTER = "syntok+quoted-stops"


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans `(start, end)` in `text`; abbreviations like "U.S." or "Dr." stay inside."""
    spans: list[tuple[int, int]] = []
    for paragraph in segmenter.analyze(text):
        for sentence in paragraph:
            tokens = [token for token in sentence if token.value]
            if not tokens:
                continue
            start = tokens[0].offset
            end = tokens[-1].offset + len(tokens[-1].value)
            if not _WORD.search(text[start:end]) and spans:
                # A fragment with no words ("■", "—") belongs to the sentence before it.
                spans[-1] = (spans[-1][0], end)
            elif text[start:end].strip():
                spans.extend(_split_after_quoted_stops(text, start, end))
    if len(spans) > 1 and not _WORD.search(text[spans[0][0] : spans[0][1]]):
        spans[0:2] = [(spans[0][0], spans[1][1])]
    return spans or ([(0, len(text))] if text.strip() else [])


def _split_after_quoted_stops(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The span split after each closing quote that ends a sentence inside it."""
    spans = []
    for match in _QUOTED_STOP.finditer(text, start, end):
        spans.append((start, match.end()))
        start = match.end()
        while start < end and text[start].isspace():
            start += 1
    spans.append((start, end))
    return spans


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def content_words(text: str) -> list[str]:
    """Lowercased words without stop words, unstemmed (`lexical_terms` stems them)."""
    return [word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS]


def stems(words: list[str]) -> list[str]:
    """Each word's stem, as the lexical index writes its terms."""
    return list(_stemmer().stemWords(words))


def lexical_terms(text: str) -> list[str]:
    """Lowercased, stemmed word terms without stop words: what the lexical index matches on."""
    return stems(content_words(text))


def text_hash(text: str) -> bytes:
    """Stable digest of a text, used as the embedding cache key."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def content_hash(data: bytes) -> str:
    """Hex digest of a file's bytes, used to tell unchanged files."""
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def slug(name: str, max_chars: int) -> str:
    """`name` as part of a file name: anything but letters, digits and "-_." becomes "_".

    Only the last `max_chars` characters are kept: the end of a model path says the most.
    """
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[-max_chars:]
