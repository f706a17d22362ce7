"""What a question asks for: the kind of answer its wording wants, and whether a sentence has one.

The classic QA rule: a "who" question wants a name, "when" a date, "how many" a number and
"how much did it cost" an amount of money that the question does not already contain. The
answerability model reads it (indexer/answerability.py); the sentence choice
(indexer/sentence_choice.py) reads the short-answer finder built on the same patterns.
"""

from __future__ import annotations

import re
from typing import Literal

AnswerType = Literal["money", "number", "date", "person"]

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    "hundred|thousand|million|billion|dozen"
)
_CURRENCY_WORDS = (
    "euros?|dollars?|pounds?|yen|yuan|renminbi|francs?|marks?|pence|cents?|rupees?|roubles?|"
    "rubles?|pesos?|kroner|krona|USD|EUR|GBP|CHF|JPY"
)
_SCALE = r"(?:\s?(?:million|billion|thousand|trillion|bn|m|k)\b)?"
# Capitalised word, accents included ("Josée", "Lefèvre", "Saint-Mathieu").
_NAME_WORD = r"[A-ZÀ-ÖØ-ÞĀ-Ž][a-zß-öø-ÿā-ž]+(?:-[A-ZÀ-ÖØ-Þa-zß-öø-ÿ][a-zß-öø-ÿā-ž]+)*"
_PATTERNS: dict[AnswerType, re.Pattern[str]] = {
    "money": re.compile(
        rf"[$€£¥₹]\s?\d[\d,.]*{_SCALE}|\b\d[\d,.]*{_SCALE}\s?(?:{_CURRENCY_WORDS})\b",
        re.IGNORECASE,
    ),
    "number": re.compile(rf"\b\d[\d,.]*\b|\b(?:{_NUMBER_WORDS})\b", re.IGNORECASE),
    "date": re.compile(
        rf"\b(?:1[0-9]{{3}}|20[0-9]{{2}})s?\b|\b(?:{_MONTHS})\b|\b\d+(?:st|nd|rd|th)? century\b",
        re.IGNORECASE,
    ),
    # Two or more capitalised words not at the start of the sentence: a likely proper name.
    "person": re.compile(
        rf"(?<![.!?]\s)(?<!^)(?<!\w){_NAME_WORD}(?:\s+(?:[A-Z]\.\s*)?{_NAME_WORD})+"
    ),
}
_WORD = re.compile(r"\w+")


# "How much did it cost?", "What was the price of ...?": an amount of money.
_MONEY_QUESTION = re.compile(
    r"\bhow much\b.*\b(cost|costs|costed|pay|paid|pays|spend|spent|spends|price|priced|worth|"
    r"charge|charged|charges|earn|earned|earns|budget|fee|fees|fund|funded|raise|raised|money|"
    r"salary|sell|sold|buy|bought)\b|^(what|which) (was|is|were|are)? ?(the )?(price|cost|fee|"
    r"budget|salary|fine|bill)\b"
)


def expected_answer_type(question: str) -> AnswerType | None:
    """The kind of answer a question asks for, when its wording says so."""
    q = question.lower().strip()
    if _MONEY_QUESTION.search(q):
        return "money"
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
