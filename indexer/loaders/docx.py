"""DOCX: body paragraphs and tables in order (python-docx); heading styles become headings."""

from __future__ import annotations

import io
import re
from typing import Any

import docx
from docx.document import Document as WordDocument
from docx.styles.style import ParagraphStyle
from docx.table import Table
from docx.text.paragraph import Paragraph

from indexer.errors import UnsupportedFile
from indexer.loaders.common import (
    SourceBuilder,
    collapse_whitespace,
    json_safe,
    short_reason,
    title_from_stem,
)
from indexer.models import Document

ZIP_MAGIC = b"PK\x03\x04"
HEADING_STYLE = re.compile(r"Heading ([1-9])")
CELL_SEPARATOR = " | "
MAX_STYLE_DEPTH = 8


def load_docx(data: bytes, doc_id: str, stem: str) -> Document:
    """Load DOCX bytes; the source is the blocks' text joined by blank lines."""
    if not data.startswith(ZIP_MAGIC):
        # Password-protected DOCX files and old .doc files are OLE containers, not zips.
        raise UnsupportedFile("cannot read DOCX: not a zip package (encrypted, or an old .doc?)")
    try:
        word = docx.Document(io.BytesIO(data))
        builder, title_paragraph = _blocks(word)
        metadata = _metadata(word)
    except Exception as error:  # noqa: BLE001 - damaged packages raise all kinds of errors
        raise UnsupportedFile(f"cannot read DOCX: {short_reason(error)}") from None
    title = metadata.get("title") or title_paragraph or title_from_stem(stem)
    return Document(doc_id, title, builder.source, builder.blocks, "docx", metadata)


def _blocks(word: WordDocument) -> tuple[SourceBuilder, str]:
    """The body's blocks in order, and the text of its first "Title" paragraph."""
    builder = SourceBuilder()
    title = ""
    for item in word.iter_inner_content():
        if isinstance(item, Table):
            for row_text in _table_rows(item):
                builder.add("paragraph", row_text)
            continue
        text = collapse_whitespace(item.text)
        if not text:
            continue
        level = heading_level(item)
        if level:
            builder.add("heading", text, level=level)
            if not title and _style_name(item.style) == "Title":
                title = text
        else:
            builder.add("paragraph", text)
    return builder, title


def _table_rows(table: Table) -> list[str]:
    """Each row's cell texts joined with " | " (a merged cell is counted once)."""
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = collapse_whitespace(cell.text)
            if text and (not cells or cells[-1] != text):
                cells.append(text)
        if cells:
            rows.append(CELL_SEPARATOR.join(cells))
    return rows


def heading_level(paragraph: Paragraph) -> int:
    """1 for "Title", N for "Heading N" (or a style based on one), else 0."""
    style: ParagraphStyle | None = paragraph.style
    for _ in range(MAX_STYLE_DEPTH):
        if style is None:
            return 0
        name = _style_name(style)
        if name == "Title":
            return 1
        if match := HEADING_STYLE.fullmatch(name):
            return int(match.group(1))
        style = style.base_style
    return 0


def _style_name(style: ParagraphStyle | None) -> str:
    return (style.name or "") if style is not None else ""


def _metadata(word: WordDocument) -> dict[str, Any]:
    properties = word.core_properties
    metadata: dict[str, Any] = {}
    for key, value in (
        ("title", properties.title),
        ("author", properties.author),
        ("created", properties.created),
    ):
        if value and (not isinstance(value, str) or value.strip()):
            metadata[key] = json_safe(value.strip() if isinstance(value, str) else value)
    return metadata
