"""Choosing the sentence that answers: similarity, shared terms, passage rank, answer type.

Weights were chosen by measuring answer-sentence accuracy on SQuAD v1.1 dev part A
(see eval/reports/); the answer-type bonus is the classic QA rule that a "who" question
wants a name, "when" a date and "how many" a number the question does not already contain.
"""

from __future__ import annotations

import re
from typing import Literal

AnswerType = Literal["number", "date", "person"]

DENSE_WEIGHT = 0.6
LEXICAL_WEIGHT = 0.2
PASSAGE_WEIGHT = 1.0
TYPE_BONUS = 0.1

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    "hundred|thousand|million|billion|dozen"
)
_PATTERNS: dict[AnswerType, re.Pattern[str]] = {
    "number": re.compile(rf"\b\d[\d,.]*\b|\b(?:{_NUMBER_WORDS})\b", re.IGNORECASE),
    "date": re.compile(
        rf"\b(?:1[0-9]{{3}}|20[0-9]{{2}})s?\b|\b(?:{_MONTHS})\b|\b\d+(?:st|nd|rd|th)? century\b",
        re.IGNORECASE,
    ),
    # Two or more capitalised words not at the start of the sentence: a likely proper name.
    "person": re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+(?:[A-Z]\.\s*)?[A-Z][a-z]+)+"),
}
_WORD = re.compile(r"\w+")


def expected_answer_type(question: str) -> AnswerType | None:
    """The kind of answer a question asks for, when its wording says so."""
    q = question.lower().strip()
    if re.search(r"\bhow (many|much)\b", q) or re.match(
        r"^(how (long|far|old|large|big|tall|high)|what (percentage|number|amount))", q
    ):
        return "number"
    if re.match(r"^(when|what year|in what year|what date|which year)\b", q) or re.search(
        r"\b(what|which) (year|decade|century|date)\b", q
    ):
        return "date"
    if re.search(r"\b(who|whom|whose)\b", q):
        return "person"
    return None


_AUTHORSHIP = re.compile(
    r"\b(who (wrote|authored|penned|is the author)|author(s)? of|written by|"
    r"whose (article|paper|essay|report|piece|post))\b",
    re.IGNORECASE,
)


def is_authorship_question(question: str) -> bool:
    """Whether the question asks who wrote a document."""
    return bool(_AUTHORSHIP.search(question))


def has_new_answer_of_type(kind: AnswerType, sentence: str, question: str) -> bool:
    """Whether `sentence` holds something of that kind which the question does not mention."""
    question_words = {word.lower() for word in _WORD.findall(question)}
    for match in _PATTERNS[kind].finditer(sentence):
        if any(word.lower() not in question_words for word in _WORD.findall(match.group())):
            return True
    return False


def sentence_score(dense: float, lexical: float, passage_score: float, type_bonus: bool) -> float:
    """How well a sentence answers: its own similarity and terms, and its passage's score."""
    return (
        DENSE_WEIGHT * dense
        + LEXICAL_WEIGHT * lexical
        + PASSAGE_WEIGHT * passage_score
        + (TYPE_BONUS if type_bonus else 0.0)
    )
