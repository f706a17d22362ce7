"""Plain text: blank-line separated paragraphs (or one per line if there are no blank lines)."""

from __future__ import annotations

import re

from indexer.loaders.common import has_blank_line, paragraph_spans, title_from_stem
from indexer.models import Block, Document
from indexer.text import split_sentences

NUMBERED_HEADING = re.compile(r"^(?:[IVXLCDM]+|\d+(?:\.\d+)*)[.)]\s+\S")
MAX_TITLE_WORDS = 8
MAX_TITLE_CHARS = 80
MAX_NUMBERED_HEADING_CHARS = 120
# A title made from a first sentence stops at a word boundary near this length.
MAX_SENTENCE_TITLE_CHARS = 90
# A file-name part that is an id, not a word: hex digests ("fc6fad951788ea23"), long numbers.
_ID_PART = re.compile(r"(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}|\d{6,}", re.IGNORECASE)
_LETTERS = re.compile(r"[^\W\d_]{2,}")
_SENTENCE_END = frozenset(".,;:!?")
_CLOSING_QUOTES = "\"'”’»"


def load_text(text: str, doc_id: str, stem: str, warnings: list[str]) -> Document:
    """Load decoded plain text; spans index `text` itself."""
    one_per_line = not has_blank_line(text)
    spans = paragraph_spans(text, one_per_line=one_per_line)
    lines = [text[start:end] for start, end in spans]
    heading_levels = detect_headings(lines)
    blocks = [
        Block("heading", line, start, end, level=level)
        if (level := heading_levels[index])
        else Block("paragraph", line, start, end)
        for index, (line, (start, end)) in enumerate(zip(lines, spans, strict=True))
    ]
    return Document(doc_id, text_title(lines, stem), text, blocks, "text", warnings=warnings)


def text_title(lines: list[str], stem: str) -> str:
    """The title a reader would give: a title line, else a file name made of words, else the
    start of the first sentence ('004_fc6fad951788ea23.txt' is no title)."""
    if lines and is_title_line(lines[0]):
        return lines[0]
    if not lines or stem_reads_as_title(stem):
        return title_from_stem(stem)
    return sentence_title(lines[0])


def stem_reads_as_title(stem: str) -> bool:
    """Whether a file name is made of words ('annual_report-2024'), not ids or digests."""
    parts = title_from_stem(stem).split()
    return any(_LETTERS.search(part) for part in parts) and not any(
        _ID_PART.fullmatch(part) for part in parts
    )


def sentence_title(paragraph: str) -> str:
    """The paragraph's first sentence, cut at a word boundary when it is long."""
    spans = split_sentences(paragraph)
    sentence = " ".join(paragraph[spans[0][0] : spans[0][1]].split()) if spans else paragraph
    if len(sentence) <= MAX_SENTENCE_TITLE_CHARS:
        return sentence
    cut = sentence[: MAX_SENTENCE_TITLE_CHARS + 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return f"{cut}…"


def detect_headings(blocks: list[str]) -> list[int]:
    """Heading level of each block, 0 for a paragraph.

    A heading is a single-line block that is a numbered heading ("II. Prospects ...") or a short
    title line, and is not the last block. Neighbouring blocks of the same kind are a list
    ("1. Flour" / "2. Sugar", or a run of short lines), not headings.
    """
    numbered = [numbered_heading_level(block) for block in blocks]
    titles = [not numbered[i] and is_title_line(block) for i, block in enumerate(blocks)]
    levels = [0] * len(blocks)
    for index in range(len(blocks) - 1):
        neighbours = [i for i in (index - 1, index + 1) if 0 <= i < len(blocks)]
        level = numbered[index]
        if level and all(numbered[i] != level for i in neighbours):
            levels[index] = level
        elif titles[index] and not any(titles[i] for i in neighbours):
            levels[index] = 1
    return levels


def numbered_heading_level(line: str) -> int:
    """1 for "IV. Title" or "3. Title", 2 for "3.1. Title"...; 0 if not a numbered heading."""
    if "\n" in line or len(line) > MAX_NUMBERED_HEADING_CHARS or not NUMBERED_HEADING.match(line):
        return 0
    if _ends_sentence(line):
        return 0
    number = line.split(maxsplit=1)[0].rstrip(".)")
    return number.count(".") + 1


def is_title_line(line: str) -> bool:
    """A short single line that reads like a title: no sentence punctuation at the end."""
    if "\n" in line or len(line) > MAX_TITLE_CHARS or len(line.split()) > MAX_TITLE_WORDS:
        return False
    first = line[0]
    return (first.isupper() or first.isdigit()) and not _ends_sentence(line)


def _ends_sentence(line: str) -> bool:
    # 'He said "go."' ends a sentence, 'The "Acheson Line"' does not.
    return line.rstrip(_CLOSING_QUOTES)[-1:] in _SENTENCE_END
