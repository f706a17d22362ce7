"""The short answer: the name, date, number, amount or place inside the answer sentence.

A question whose wording asks for one of these gets the span of the answer sentence that
holds such a thing, which the question does not already mention, closest to the words it
shares with the question (the classic extractive-QA heuristic: the answer sits next to the
question's own words). Patterns are wider than the sentence-choice ones in
`indexer.answer` ("October 3, 1962", "3.5 million", single-word names and places), since
here they cut an answer out rather than score a sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from indexer.answer import expected_answer_type

ShortAnswerType = Literal["money", "number", "date", "person", "place"]
SHORT_ANSWER_TYPES: tuple[ShortAnswerType, ...] = ("money", "number", "date", "person", "place")

_MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    "fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|"
    "eighty|ninety|hundred|thousand|million|billion|trillion|dozen|dozens|hundreds|thousands|"
    "millions|billions"
)
_SCALE_WORDS = "hundred|thousand|million|billion|trillion"
_CURRENCY_WORDS = (
    "euros?|dollars?|pounds?|yen|yuan|renminbi|francs?|marks?|pence|cents?|rupees?|roubles?|"
    "rubles?|pesos?|kroner|krona|USD|EUR|GBP|CHF|JPY"
)
_DIGITS = r"\d+(?:,\d{3})*(?:\.\d+)?"
_SCALE = rf"(?:\s?(?:{_SCALE_WORDS}|bn|m|k)\b)?"
_NUMBER_WORD_RUN = rf"\b(?:{_NUMBER_WORDS})(?:[\s-]+(?:and\s+)?(?:{_NUMBER_WORDS}))*\b"
# Capitalised word, accents included ("Josée", "Lefèvre", "Saint-Mathieu").
_NAME_WORD = r"[A-ZÀ-ÖØ-ÞĀ-Ž]\w*(?:['’][A-Z]\w*)?(?:-\w+)*"
# Lower-case particles allowed inside a name: "Charles de Gaulle", "Ludwig van Beethoven".
_NAME_JOINERS = r"(?:de|da|di|del|della|der|den|van|von|la|le|du|des|y|al|bin|ibn)"
_NAME = rf"{_NAME_WORD}(?:\s+(?:[A-Z]\.\s*)?(?:{_NAME_JOINERS}\s+)?{_NAME_WORD})*"

_PATTERNS: dict[ShortAnswerType, re.Pattern[str]] = {
    "money": re.compile(
        rf"[$€£¥₹]\s?{_DIGITS}{_SCALE}|\b{_DIGITS}{_SCALE}\s?(?:{_CURRENCY_WORDS})\b",
        re.IGNORECASE,
    ),
    "number": re.compile(
        rf"(?<![\w.]){_DIGITS}(?:\s?(?:%|percent\b|per cent\b)|\s(?:{_SCALE_WORDS})\b|(?![\w]))"
        rf"|{_NUMBER_WORD_RUN}",
        re.IGNORECASE,
    ),
    "date": re.compile(
        r"\b(?:between|from)\s+(?:1[0-9]{3}|20[0-9]{2})s?\s+(?:and|to|until)\s+(?:1[0-9]{3}|20[0-9]{2})s?\b"
        rf"|\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{3,4}}\b"
        rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})\.?,?\s+\d{{3,4}}\b"
        rf"|\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?!\s*,?\s*\d)"
        rf"|\b(?:{_MONTHS})\.?,?\s+(?:of\s+)?\d{{3,4}}\b"
        r"|\b(?:early|mid|late)?-?\d{1,2}(?:st|nd|rd|th)[\s-]century\b"
        r"|\b(?:1[0-9]{3}|20[0-9]{2})(?:s|\s?(?:-|–|to)\s?(?:1[0-9]{3}|20[0-9]{2}|[0-9]{2}))?\b"
        rf"|\b(?:{_MONTHS})\b",
    ),
    "person": re.compile(rf"(?<![\w'’-]){_NAME}"),
    "place": re.compile(rf"(?<![\w'’-]){_NAME}"),
}
_WORD = re.compile(r"\w+")
# Capitalised words that are not names at the start of a sentence or anywhere.
_NOT_NAMES = frozenset(
    "the a an in on at of for from to by with and but or as after before during while when "
    "where who what which this that these those it its his her their there then however "
    "although though since because if he she they we i you our my your also both each many "
    "most some one two three first later today monday tuesday wednesday thursday friday "
    "saturday sunday near throughout under soon despite during among following upon within "
    "without over until unlike like according due prior between into onto through against "
    "all no not such other another several".split()
    + _MONTHS.lower().split("|")
)
_PLACE_QUESTION = re.compile(
    r"^(where|from where|to where)\b|\bwhere (is|was|are|were|did|do|does|can|could)\b"
    r"|\b(what|which|in what|in which) (city|cities|country|countries|state|states|town|"
    r"village|region|province|county|continent|island|river|place|location|area|nation|"
    r"capital|port|street)\b"
)
_PLACE_PREPOSITIONS = frozenset("in at from to near into across of on".split())


@dataclass(frozen=True, slots=True)
class ShortAnswer:
    """The short answer: its text and its offsets in the document's source.

    `offset` is where it starts inside the answer sentence's text (for display; not part
    of the JSON)."""

    text: str
    start: int
    end: int
    offset: int

    def to_dict(self) -> dict[str, int | str]:
        return {"text": self.text, "start": self.start, "end": self.end}


def short_answer_type(question: str) -> ShortAnswerType | None:
    """The kind of short answer a question asks for: a name, date, number, amount or place."""
    kind = expected_answer_type(question)
    if kind is not None:
        return kind
    if _PLACE_QUESTION.search(question.lower().strip()):
        return "place"
    return None


def find_short_span(kind: ShortAnswerType, sentence: str, question: str) -> tuple[int, int] | None:
    """The span of `sentence` that answers: something of that kind which the question does
    not mention, nearest the words the sentence shares with the question (None if none)."""
    question_words = {word.lower() for word in _WORD.findall(question)}
    trimmed = (
        _trim(kind, sentence, m.start(), m.end()) for m in _PATTERNS[kind].finditer(sentence)
    )
    candidates = [
        span
        for span in trimmed
        if span is not None and _is_new(sentence[span[0] : span[1]], question_words)
    ]
    asked = question.lower()
    if kind == "number":
        # "How many" rarely wants a year; keep years only when nothing else is there.
        counts = [span for span in candidates if not _YEAR.fullmatch(sentence[span[0] : span[1]])]
        candidates = counts or candidates
    if kind == "date" and _YEAR_QUESTION.search(asked):
        years = [span for span in candidates if _YEAR.search(sentence[span[0] : span[1]])]
        candidates = years or candidates
    if not candidates:
        return None
    anchors = [
        (m.start(), m.end())
        for m in _WORD.finditer(sentence)
        if m.group().lower() in question_words and m.group().lower() not in _NOT_ANCHORS
    ]

    def distance(span: tuple[int, int]) -> tuple[float, int]:
        gaps = [
            max(anchor[0] - span[1], span[0] - anchor[1], 0)
            for anchor in anchors
            if not (span[0] <= anchor[0] and anchor[1] <= span[1])
        ]
        gap = float(min(gaps)) if gaps else float(len(sentence))
        following = _WORD.match(sentence, _skip_space(sentence, span[1]))
        if kind == "number" and following and following.group().lower() in question_words:
            gap = -1.0  # "54 documents" for "how many documents"
        if kind == "place" and _after_preposition(sentence, span[0]):
            gap /= 2
        if kind in ("person", "place") and _starts_sentence(sentence, span):
            gap += len(sentence)  # a lone capitalised first word is most often not a name
        if kind in ("person", "place") and _ADJECTIVE.fullmatch(sentence[span[0] : span[1]]):
            gap += len(sentence)  # "Jewish", "Islamic", "Spanish-language": not names
        if kind == "person" and " " not in sentence[span[0] : span[1]]:
            gap += SINGLE_NAME_PENALTY
        return gap, span[0]

    best = min(candidates, key=distance)
    if kind == "number" and _MEASURE_QUESTION.search(asked):
        best = (best[0], _with_unit(sentence, best[1], question_words))
    return best


SINGLE_NAME_PENALTY = 40  # characters: a full name beats a lone word a little farther off
_ADJECTIVE = re.compile(r"\w+(?:ish|ic|ese|ian|ean|ern)(?:-[a-z]+)?|\w+-[a-z]+")
_YEAR = re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})\b")
_YEAR_QUESTION = re.compile(r"\b(what|which) year\b")
_MEASURE_QUESTION = re.compile(
    r"^how (much|far|long|high|large|big|tall|old|deep|wide|heavy|fast)\b"
)
_NOT_ANCHORS = _NOT_NAMES | frozenset(
    "is was were are be been being did do does done has have had how many much what which who "
    "whom whose when where why s".split()
)


def _skip_space(sentence: str, at: int) -> int:
    while at < len(sentence) and sentence[at] == " ":
        at += 1
    return at


def _with_unit(sentence: str, end: int, question_words: set[str]) -> int:
    """The end of a measure with its unit: "15 kilometres", "6.04 milliliters"."""
    unit = re.compile(r"[a-zµ°]+\b").match(sentence, _skip_space(sentence, end))
    if unit is None or unit.start() - end > 1 or unit.group() in _NOT_ANCHORS:
        return end
    if unit.group() in question_words and unit.group() not in ("years", "miles", "km"):
        return end
    return unit.end()


def _starts_sentence(sentence: str, span: tuple[int, int]) -> bool:
    lead = sentence[: span[0]]
    single = " " not in sentence[span[0] : span[1]]
    return single and not lead.strip(" \"'“‘(")


def _trim(kind: ShortAnswerType, sentence: str, start: int, end: int) -> tuple[int, int] | None:
    """Names lose leading words that are not names ("The", "In"); None when nothing is left."""
    if kind not in ("person", "place"):
        return start, end
    words = list(_WORD.finditer(sentence, start, end))
    while words and words[0].group().lower() in _NOT_NAMES:
        words.pop(0)
    while words and words[-1].group().lower() in _NOT_NAMES:
        words.pop()
    if not words:
        return None
    return words[0].start(), words[-1].end()


def _is_new(text: str, question_words: set[str]) -> bool:
    words = [word.lower() for word in _WORD.findall(text)]
    return any(word not in question_words for word in words)


def _after_preposition(sentence: str, start: int) -> bool:
    before = _WORD.findall(sentence[max(0, start - 12) : start])
    return bool(before) and before[-1].lower() in _PLACE_PREPOSITIONS


def source_span(
    source: str, sentence_text: str, char_start: int, char_end: int, local: tuple[int, int]
) -> tuple[int, int] | None:
    """Where `sentence_text[local]` sits in `source`, given the sentence's source span.

    Plain text is its own source; otherwise (markup stripped) the short text is looked up in
    the sentence's source span, and None is given when it is not there verbatim."""
    text = sentence_text[local[0] : local[1]]
    if source[char_start:char_end] == sentence_text:
        return char_start + local[0], char_start + local[1]
    found = [m.start() for m in re.finditer(re.escape(text), source[char_start:char_end])]
    if not found:
        return None
    # Several: the one at about the same place in the sentence.
    expected = local[0] * max(char_end - char_start, 1) / max(len(sentence_text), 1)
    at = min(found, key=lambda offset: abs(offset - expected))
    return char_start + at, char_start + at + len(text)
