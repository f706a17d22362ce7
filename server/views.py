"""Presentation helpers shared by the JSON API, the pages and the embed page.

Nothing here touches HTTP: it turns retrieval results into URLs, JSON dicts and the
highlighted text pieces the templates render (always escaped by jinja2).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from indexer.models import Answer, DocumentBlock, DocumentView, Hit, IndexStats, RankedPassage
from indexer.retrieval import MAX_OFFSET, Scope

# How far past the previous match a character of clean text may sit in the source text:
# long enough to step over a Markdown link target, short enough to stay in the paragraph.
_ALIGN_LOOKAHEAD = 2000
_WHITESPACE = re.compile(r"\s")
_SPAN = re.compile(r"(\d{1,12})-(\d{1,12})")
_HEADING_NUMBER = re.compile(r"^\s*(?:[IVXLC]+|\d+(?:\.\d+)*)[.)]\s+")
METADATA_SHOWN = ("author", "authors", "date")


@dataclass(frozen=True, slots=True)
class Highlighted:
    """Text cut around one marked span; `marked` is empty when nothing is highlighted.

    `bold` is the short answer inside `marked` (offsets into `marked`), shown in bold."""

    before: str
    marked: str
    after: str
    bold: tuple[int, int] | None = None

    @property
    def marked_parts(self) -> tuple[str, str, str]:
        """`marked` cut around its bold part (all of it before the cut when there is none)."""
        if self.bold is None:
            return self.marked, "", ""
        start, end = self.bold
        return self.marked[:start], self.marked[start:end], self.marked[end:]


@dataclass(frozen=True, slots=True)
class BlockView:
    """A document block as the document page shows it."""

    block: DocumentBlock
    text: Highlighted
    cited: bool


def doc_url(
    doc_id: str,
    paragraph: int | None = None,
    span: tuple[int, int] | None = None,
    short: tuple[int, int] | None = None,
) -> str:
    """The document page of `doc_id` (a relative path, so it is quoted but keeps its slashes);
    `span` is highlighted and `short` (the short answer inside it) shown in bold."""
    url = "/doc/" + quote(doc_id, safe="/")
    if span is not None:
        url += f"?hl={span[0]}-{span[1]}"
        if short is not None:
            url += f"&short={short[0]}-{short[1]}"
    if paragraph is not None:
        url += f"#p{paragraph}"
    return url


def answer_url(answer: Answer) -> str:
    """Where the answer is cited: its paragraph, the sentence highlighted, the short answer bold."""
    short = (answer.short.start, answer.short.end) if answer.short else None
    return doc_url(answer.doc_id, answer.paragraph, (answer.char_start, answer.char_end), short)


def _short_of(hit: Hit, answer: Answer | None) -> Answer | None:
    """The answer when `hit` holds it and it has a short answer."""
    if answer is None or answer.short is None or hit.rank != answer.passage:
        return None
    return answer


def hit_url(hit: Hit, answer: Answer | None = None) -> str:
    """Where a passage is cited: its paragraph, with the answering sentence highlighted (and
    the short answer in bold when the passage holds the `answer`)."""
    holding = _short_of(hit, answer)
    if holding is not None:
        return answer_url(holding)
    sentence = hit.best_sentence
    span = (sentence.char_start, sentence.char_end) if sentence else None
    return doc_url(hit.passage.doc_id, hit.passage.paragraph, span)


def highlight_hit(hit: Hit, answer: Answer | None = None) -> Highlighted:
    """The passage text with its answering sentence marked (and the short answer in bold when
    the passage holds the `answer`)."""
    sentence = hit.best_sentence
    if sentence is None:
        return Highlighted(hit.passage.text, "", "")
    marked = _cut(hit.passage.text, sentence.start, sentence.end)
    holding = _short_of(hit, answer)
    if holding is None or holding.short is None:
        return marked
    return _with_bold(marked, holding.short.offset, holding.short.offset + len(holding.short.text))


def answer_parts(answer: Answer) -> Highlighted:
    """The answer sentence with its short answer as the marked part (nothing marked without)."""
    short = answer.short
    if short is None:
        return Highlighted(answer.text, "", "")
    return _cut(answer.text, short.offset, short.offset + len(short.text))


def _with_bold(marked: Highlighted, start: int, end: int) -> Highlighted:
    start, end = max(0, start), min(len(marked.marked), end)
    if start >= end:
        return marked
    return Highlighted(marked.before, marked.marked, marked.after, (start, end))


def parse_span(value: str | None) -> tuple[int, int] | None:
    """`"1234-1301"` as a pair of source offsets; anything else is ignored (None)."""
    match = _SPAN.fullmatch(value or "")
    if match is None:
        return None
    start, end = int(match[1]), int(match[2])
    return (start, end) if start < end else None


def document_blocks(
    view: DocumentView, span: tuple[int, int] | None, short: tuple[int, int] | None = None
) -> list[BlockView]:
    """Every block of a document, the ones overlapping `span` cited and the span marked; a
    `short` span inside it (the short answer) is shown in bold."""
    if short is not None and (span is None or not (span[0] <= short[0] and short[1] <= span[1])):
        short = None
    return [_block_view(block, view.source, span, short) for block in view.blocks]


def _block_view(
    block: DocumentBlock,
    source: str,
    span: tuple[int, int] | None,
    short: tuple[int, int] | None = None,
) -> BlockView:
    plain = Highlighted(block.text, "", "")
    if span is None or block.kind != "paragraph":
        return BlockView(block, plain, cited=False)
    if span[1] <= block.char_start or span[0] >= block.char_end:
        return BlockView(block, plain, cited=False)
    local = locate_span(block, source, span)
    # When the span can't be placed in the clean text, the whole paragraph stays cited.
    if local is None:
        return BlockView(block, plain, cited=True)
    text = _cut(block.text, *local)
    bold = locate_span(block, source, short) if short is not None else None
    if bold is not None:
        text = _with_bold(text, bold[0] - local[0], bold[1] - local[0])
    return BlockView(block, text, cited=True)


def locate_span(block: DocumentBlock, source: str, span: tuple[int, int]) -> tuple[int, int] | None:
    """The part of `block.text` that comes from `source[span[0]:span[1]]`, if it can be found.

    Block text is the source slice itself for plain text, but stripped of markup for
    Markdown or HTML, so then each character is matched back to the source in order.
    """
    start, end = span
    if source[block.char_start : block.char_end] == block.text:
        local_start = max(start - block.char_start, 0)
        local_end = min(end - block.char_start, len(block.text))
        return (local_start, local_end) if local_start < local_end else None
    positions = _align(block.text, source, block.char_start, block.char_end)
    inside = [i for i, at in enumerate(positions) if at is not None and start <= at < end]
    if not inside:
        return None
    return inside[0], inside[-1] + 1


def _align(text: str, source: str, lo: int, hi: int) -> list[int | None]:
    """For each character of `text`, its source offset within [lo, hi), matched greedily."""
    positions: list[int | None] = []
    cursor = lo
    for char in text:
        limit = min(cursor + _ALIGN_LOOKAHEAD, hi)
        if char.isspace():
            match = _WHITESPACE.search(source, cursor, limit)
            found = match.start() if match else -1
        else:
            found = source.find(char, cursor, limit)
        if found < 0:
            positions.append(None)
            continue
        positions.append(found)
        cursor = found + 1
    return positions


def _cut(text: str, start: int, end: int) -> Highlighted:
    start, end = max(0, start), min(len(text), end)
    if start >= end:
        return Highlighted(text, "", "")
    return Highlighted(text[:start], text[start:end], text[end:])


def shown_metadata(metadata: dict[str, Any]) -> list[tuple[str, str]]:
    """The few metadata fields worth a line on a page (author, date), as text."""
    shown = []
    for key in METADATA_SHOWN:
        value = metadata.get(key)
        if isinstance(value, list):
            value = ", ".join(str(item) for item in value)
        if value not in (None, ""):
            shown.append((key, str(value)))
    return shown


def example_queries(titles: list[str], headings: list[str], limit: int = 3) -> list[str]:
    """Questions to suggest on the home page, taken from the collection itself.

    Titles and headings that are questions come first, then headings (their numbering
    dropped): each names something the collection is about.
    """
    headings = [_HEADING_NUMBER.sub("", heading).strip() for heading in headings]
    questions = [text for text in [*titles, *headings] if text.endswith("?")]
    topics = [text for text in headings if len(text.split()) >= 3]
    picked: list[str] = []
    for text in [*questions, *topics]:
        if len(text) <= 120 and text not in picked:
            picked.append(text)
    return picked[:limit]


@dataclass(frozen=True, slots=True)
class IndexSummary:
    """What a results page says was searched: '2 documents · 40 paragraphs', and when built."""

    text: str
    built_at: str
    age: str


def index_summary(stats: IndexStats, paragraphs: int, now: datetime) -> IndexSummary:
    documents = f"{stats.documents:,} document{'s' if stats.documents != 1 else ''}"
    counted = f"{paragraphs:,} paragraph{'s' if paragraphs != 1 else ''}"
    return IndexSummary(f"{documents} · {counted}", stats.built_at, age(stats.built_at, now))


def age(timestamp: str, now: datetime) -> str:
    """How long ago an ISO timestamp was, as a person says it: '5 minutes ago'."""
    try:
        seconds = (now - datetime.fromisoformat(timestamp)).total_seconds()
    except (TypeError, ValueError):
        return timestamp
    if seconds < 60:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return timestamp


# Passages looked at for the facets of a results page.
FACET_DEPTH = 50


@dataclass(frozen=True, slots=True)
class Facet:
    """A document or folder among a question's best passages, and how many it holds."""

    value: str
    count: int


@dataclass(frozen=True, slots=True)
class Facets:
    documents: list[Facet]
    folders: list[Facet]


def facets(ranked: Sequence[RankedPassage]) -> Facets:
    """The documents and folders of the best passages, most passages first."""
    documents: dict[str, int] = {}
    folders: dict[str, int] = {}
    for passage in ranked:
        documents[passage.doc_id] = documents.get(passage.doc_id, 0) + 1
        folder, slash, _ = passage.doc_id.rpartition("/")
        if slash:
            folders[folder] = folders.get(folder, 0) + 1

    def ordered(counts: dict[str, int]) -> list[Facet]:
        return [Facet(value, count) for value, count in sorted(counts.items(), key=_by_count)]

    return Facets(ordered(documents), ordered(folders))


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def scope_params(scope: Scope) -> dict[str, str]:
    """The filters of a question as query parameters (only those set)."""
    given = {"doc": scope.doc, "folder": scope.folder, "format": scope.format}
    return {name: value for name, value in given.items() if value}


@dataclass(frozen=True, slots=True)
class ResultLinks:
    """Links of a results page: the pages before and after, and the question with one more
    filter or one less."""

    asked: dict[str, str | int]
    previous: str | None
    next: str | None

    @classmethod
    def of(cls, asked: dict[str, str | int], shown: int) -> ResultLinks:
        k, offset = int(asked["k"]), int(asked["offset"])
        previous = cls._with(asked, offset=max(offset - k, 0)) if offset > 0 else None
        further = offset + k
        more = shown == k and further <= MAX_OFFSET
        return cls(asked, previous, cls._with(asked, offset=further) if more else None)

    def narrowed(self, name: str, value: str) -> str:
        """The question within one more filter, from its first page."""
        return self._with(self.asked, offset=0, **{name: value})

    def widened(self, name: str) -> str:
        """The question without one filter, from its first page."""
        kept = {key: value for key, value in self.asked.items() if key != name}
        return self._with(kept, offset=0)

    @staticmethod
    def _with(asked: dict[str, str | int], **changes: str | int) -> str:
        merged = {**asked, **changes}
        if merged.get("offset") == 0:
            merged.pop("offset")
        return "/?" + urlencode(merged)
