"""Turn a loaded document into numbered paragraphs and the passages that get embedded."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from indexer.loaders import LOADERS_VERSION
from indexer.models import Block, Document, DocumentBlock, Passage, Sentence
from indexer.text import SENTENCE_SPLITTER, split_sentences

TokenCounter = Callable[[Sequence[str]], list[int]]


def estimate_tokens(texts: Sequence[str]) -> list[int]:
    """A model-free token estimate (word pieces run about 1.3 per word)."""
    return [int(len(text.split()) * 1.3) + 1 for text in texts]


@dataclass(frozen=True, slots=True)
class ChunkingOptions:
    """How documents are cut into passages; an index built another way is re-chunked."""

    max_tokens: int = 256
    overlap: int = 1

    def to_dict(self) -> dict[str, int | str]:
        return {
            "max_tokens": self.max_tokens,
            "overlap": self.overlap,
            "splitter": SENTENCE_SPLITTER,
            "title": "counted",
            "loaders": LOADERS_VERSION,
        }


@dataclass(slots=True)
class ChunkedDocument:
    document: Document
    blocks: list[DocumentBlock]
    passages: list[Passage]


def chunk_document(
    document: Document,
    options: ChunkingOptions,
    count_tokens: TokenCounter = estimate_tokens,
) -> ChunkedDocument:
    """Number the paragraphs (1-based, headings excluded), attach sections, cut passages.

    A passage is embedded after its document's title, so windows leave room for the title:
    otherwise the model would cut off the end of a long passage.
    """
    title_tokens = count_tokens([document.title])[0] + 1 if document.title else 0
    budget = max(options.max_tokens - title_tokens, options.max_tokens // 2)
    blocks: list[DocumentBlock] = []
    passages: list[Passage] = []
    section: str | None = None
    number = 0
    for block in document.blocks:
        text = block.text.strip()
        if not text:
            continue
        if block.kind == "heading":
            section = " ".join(text.split())
            blocks.append(
                DocumentBlock("heading", None, section, block.page, text, block.start, block.end)
            )
            continue
        number += 1
        blocks.append(
            DocumentBlock(
                "paragraph", number, section, block.page, block.text, block.start, block.end
            )
        )
        passages.extend(
            _paragraph_passages(
                document, block, number, section, budget, options.overlap, count_tokens
            )
        )
    note = find_author_note(blocks, document.title)
    if note:
        document.metadata.setdefault("author", note[0])
        document.metadata["author_paragraph"] = note[1]
    return ChunkedDocument(document, blocks, passages)


_NAME = r"[A-Z][\w'’.-]+(?:\s+[A-Z][\w'’.-]+){1,3}"
_AUTHOR_NOTE = re.compile(rf"^[\W_]*(?P<name>{_NAME})\s+(?:is|was)\s+(?:a|an|the)?\s*\w")
_BYLINE = re.compile(rf"^[\W_]*By\s+(?P<name>{_NAME})[\W_]*$")


def find_author_note(blocks: Sequence[DocumentBlock], title: str = "") -> tuple[str, int] | None:
    """The author and the paragraph naming them.

    Either a "By NAME" line near the top, or a short "NAME is a ..." note near the end:
    the usual shapes of an article's byline and author note. A "NAME is a ..." sentence
    that opens the text, or whose NAME is the title or a heading, introduces the subject
    ("Saint-Mathieu Lighthouse is a lighthouse ..."), not the author.
    """
    paragraphs = [b for b in blocks if b.kind == "paragraph" and b.number is not None]
    for block in paragraphs[:3]:
        match = _BYLINE.match(block.text.strip())
        if match and block.number is not None:
            return match.group("name"), block.number
    subjects = {_folded(title)} | {_folded(b.text) for b in blocks if b.kind == "heading"}
    closing = [block for block in paragraphs[-4:] if block is not paragraphs[0]]
    for block in reversed(closing):
        match = _AUTHOR_NOTE.match(block.text.strip())
        if (
            match
            and len(block.text.split()) <= 60
            and block.number is not None
            and _folded(match.group("name")) not in subjects
        ):
            return match.group("name"), block.number
    return None


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _paragraph_passages(
    document: Document,
    block: Block,
    number: int,
    section: str | None,
    max_tokens: int,
    overlap: int,
    count_tokens: TokenCounter,
) -> list[Passage]:
    spans = split_sentences(block.text)
    lengths = count_tokens([block.text[start:end] for start, end in spans])
    windows = _windows(lengths, max_tokens, overlap)
    passages = []
    for window_number, (first, last) in enumerate(windows):
        start, end = spans[first][0], spans[last][1]
        char_start, char_end = block.source_span(start, end)
        sentences = tuple(
            Sentence(
                text=block.text[s_start:s_end],
                start=s_start - start,
                end=s_end - start,
                char_start=block.source_span(s_start, s_end)[0],
                char_end=block.source_span(s_start, s_end)[1],
            )
            for s_start, s_end in spans[first : last + 1]
        )
        passages.append(
            Passage(
                doc_id=document.doc_id,
                title=document.title,
                paragraph=number,
                section=section,
                page=block.page,
                text=block.text[start:end],
                char_start=char_start,
                char_end=char_end,
                sentences=sentences,
                window=window_number,
            )
        )
    return passages


def _windows(lengths: list[int], max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Inclusive sentence ranges, each within `max_tokens` where possible, overlapping."""
    if sum(lengths) <= max_tokens:
        return [(0, len(lengths) - 1)]
    windows: list[tuple[int, int]] = []
    first = 0
    while first < len(lengths):
        last, total = first, lengths[first]
        while last + 1 < len(lengths) and total + lengths[last + 1] <= max_tokens:
            last += 1
            total += lengths[last]
        windows.append((first, last))
        if last == len(lengths) - 1:
            break
        first = max(last + 1 - overlap, first + 1)
    return windows
