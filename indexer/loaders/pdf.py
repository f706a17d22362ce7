"""PDF: page text from pypdf, with wrapped lines put back together into paragraphs."""

from __future__ import annotations

import io
import logging
import re
import statistics
import warnings as python_warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pypdf import PasswordType, PdfReader

from indexer.errors import UnsupportedFile
from indexer.loaders.common import (
    SourceBuilder,
    collapse_whitespace,
    json_safe,
    short_reason,
    title_from_stem,
)
from indexer.loaders.text import is_title_line, numbered_heading_level
from indexer.models import BlockKind, Document

BULLETS = "•●○◦▪■□►▸‣⁃–—*-"
SENTENCE_END = (".", "!", "?", ":", '"', "”", "’")
# A line this much shorter than the page's typical line can end a paragraph...
SHORT_LINE_RATIO = 0.8
# ...and a heading is shorter still.
HEADING_LINE_RATIO = 0.7
PAGE_NUMBER = re.compile(
    r"(?:page\s+)?\d{1,4}(?:\s*(?:/|of)\s*\d{1,4})?|[-–—]\s*\d{1,4}\s*[-–—]", re.I
)
# Titles and authors that PDF producers write when the real one is unknown.
PLACEHOLDERS = frozenset({"", "untitled", "(untitled)", "(anonymous)", "anonymous", "unknown"})
PDF_HEADER_WINDOW = 1024  # readers accept a little junk before "%PDF-"
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u00ad]")  # soft hyphen too


def load_pdf(data: bytes, doc_id: str, stem: str) -> Document:
    """Load PDF bytes; blocks carry their 1-based page and the source joins their text."""
    warnings: list[str] = []
    with _quiet_pypdf():
        reader = _open(data)
        pages = [_page_text(reader, number, warnings) for number in range(len(reader.pages))]
        metadata = _metadata(reader)
    builder = SourceBuilder()
    for number, page_text in enumerate(pages, start=1):
        for kind, text, level in page_blocks(page_text):
            builder.add(kind, text, level=level, page=number)
    if not builder.blocks:
        raise UnsupportedFile("no extractable text (scanned PDF?)")
    title = metadata.get("title") or title_from_stem(stem)
    return Document(doc_id, title, builder.source, builder.blocks, "pdf", metadata, warnings)


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """Silence pypdf's logging and warnings about damaged files while a PDF is read."""
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with python_warnings.catch_warnings():
            python_warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _open(data: bytes) -> PdfReader:
    if b"%PDF-" not in data[:PDF_HEADER_WINDOW]:
        raise UnsupportedFile("cannot read PDF: not a PDF file")
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except Exception as error:  # noqa: BLE001 - damaged PDFs raise all kinds of errors
        raise UnsupportedFile(f"cannot read PDF: {short_reason(error)}") from None
    if encrypted:
        # Many PDFs are encrypted only to restrict copying or printing; "" opens those.
        try:
            opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
        except Exception:  # noqa: BLE001 - e.g. the AES backend is not installed
            opened = False
        if not opened:
            raise UnsupportedFile("encrypted PDF")
    try:
        len(reader.pages)
    except Exception as error:  # noqa: BLE001
        raise UnsupportedFile(f"cannot read PDF: {short_reason(error)}") from None
    return reader


def _page_text(reader: PdfReader, index: int, warnings: list[str]) -> str:
    try:
        return reader.pages[index].extract_text() or ""
    except Exception:  # noqa: BLE001 - one damaged page must not lose the others
        warnings.append(f"page {index + 1}: text could not be extracted")
        return ""


def _metadata(reader: PdfReader) -> dict[str, Any]:
    metadata: dict[str, Any] = {"pages": len(reader.pages)}
    try:
        info = reader.metadata
    except Exception:  # noqa: BLE001
        return metadata
    if info is None:
        return metadata
    for key, value in (("title", info.title), ("author", info.author)):
        if isinstance(value, str) and value.strip().lower() not in PLACEHOLDERS:
            metadata[key] = collapse_whitespace(value)
    try:
        created = info.creation_date
    except Exception:  # noqa: BLE001 - malformed date strings
        created = None
    if created is not None:
        metadata["created"] = json_safe(created)
    return metadata


def page_blocks(page_text: str) -> list[tuple[BlockKind, str, int]]:
    """(kind, text, level) of the paragraphs and headings of one page's extracted text."""
    lines = _clean_lines(page_text)
    filled = [line for line in lines if line]
    if not filled:
        return []
    typical = statistics.quantiles([len(line) for line in filled], n=4)[2] if len(filled) > 1 else 0
    blocks: list[tuple[BlockKind, str, int]] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(("paragraph", _join_lines(paragraph), 1))
            paragraph.clear()

    previous = ""
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if not line:
            flush()
            previous = ""
        elif level := _heading_level(line, previous, following, typical):
            flush()
            blocks.append(("heading", line, level))
            previous = ""  # a heading may follow a heading: title, then "1. Introduction"
        else:
            paragraph.append(line)
            if following and _ends_paragraph(line, following, typical):
                flush()
            previous = line
    flush()
    return blocks


def _clean_lines(page_text: str) -> list[str]:
    lines = [collapse_whitespace(_CONTROL_CHARS.sub("", line)) for line in page_text.split("\n")]
    filled = [index for index, line in enumerate(lines) if line]
    # A bare page number at the top or bottom of the page is not text.
    for index in filled[:1] + filled[-1:]:
        if PAGE_NUMBER.fullmatch(lines[index]):
            lines[index] = ""
    return lines


def _starts_block(line: str) -> bool:
    first = line[:1]
    return first.isupper() or first.isdigit() or first in BULLETS


def _ends_paragraph(line: str, following: str, typical: float) -> bool:
    if following[0] in BULLETS:
        return True
    return (
        line.endswith(SENTENCE_END)
        and _starts_block(following)
        and len(line) < SHORT_LINE_RATIO * typical
    )


def _heading_level(line: str, previous: str, following: str, typical: float) -> int:
    """Level of a heading line: short, title-like, after a finished sentence, before a new one."""
    if not following or len(line) >= HEADING_LINE_RATIO * typical or not _starts_block(following):
        return 0
    if previous and not previous.endswith(SENTENCE_END):
        return 0
    return numbered_heading_level(line) or (1 if is_title_line(line) else 0)


def _join_lines(lines: list[str]) -> str:
    """Join wrapped lines with spaces, undoing hyphenation ("inter-" + "national")."""
    text = lines[0]
    for line in lines[1:]:
        if len(text) > 1 and text[-1] == "-" and text[-2].islower() and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}"
    return text
