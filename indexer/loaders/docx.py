"""DOCX: body paragraphs and tables in order (python-docx); heading styles become headings."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import docx
from docx.document import Document as WordDocument
from docx.styles.style import ParagraphStyle
from docx.table import Table, _Cell
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
LABEL_SEPARATOR = ", "  # not ";": the sentence splitter would cut the row
MAX_STYLE_DEPTH = 8
# Bounds on what a package may unpack to, checked before python-docx reads it. A Word
# document of 2,000 pages has some 100,000 paragraphs and 2 million XML elements.
MAX_PARTS = 10_000
MAX_UNPACKED_BYTES = 200 * 1024 * 1024
MAX_XML_PART_BYTES = 64 * 1024 * 1024
MAX_ELEMENTS = 3_000_000
MAX_PARAGRAPHS = 300_000
_READ_CHUNK = 1024 * 1024
_PARAGRAPH_TAGS = (b"<w:p>", b"<w:p ", b"<w:p/>")


def load_docx(data: bytes, doc_id: str, stem: str) -> Document:
    """Load DOCX bytes; the source is the blocks' text joined by blank lines."""
    if not data.startswith(ZIP_MAGIC):
        # Password-protected DOCX files and old .doc files are OLE containers, not zips.
        raise UnsupportedFile("cannot read DOCX: not a zip package (encrypted, or an old .doc?)")
    check_package(data)
    try:
        word = docx.Document(io.BytesIO(data))
        builder, title_paragraph = _blocks(word)
        metadata = _metadata(word)
    except Exception as error:  # noqa: BLE001 - damaged packages raise all kinds of errors
        raise UnsupportedFile(f"cannot read DOCX: {short_reason(error)}") from None
    title = metadata.get("title") or title_paragraph or title_from_stem(stem)
    return Document(doc_id, title, builder.source, builder.blocks, "docx", metadata)


def check_package(data: bytes) -> None:
    """Refuse a package that unpacks to too much, or to too many XML elements or paragraphs.

    The sizes the zip declares are checked first; then every part is inflated (and thrown
    away) counting the bytes it really gives, since a zip can lie about its sizes.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            parts = package.infolist()
            if len(parts) > MAX_PARTS:
                raise UnsupportedFile(
                    f"DOCX has {len(parts):,} parts, over the {MAX_PARTS:,} limit"
                )
            declared = sum(part.file_size for part in parts)
            if declared > MAX_UNPACKED_BYTES:
                raise UnsupportedFile(_too_large(declared))
            unpacked = elements = paragraphs = 0
            for part in parts:
                is_xml = part.filename.endswith((".xml", ".rels"))
                size = 0
                tail = b""
                with package.open(part) as stream:
                    while chunk := stream.read(_READ_CHUNK):
                        size += len(chunk)
                        unpacked += len(chunk)
                        if unpacked > MAX_UNPACKED_BYTES:
                            raise UnsupportedFile(_too_large(unpacked))
                        if not is_xml:
                            continue
                        if size > MAX_XML_PART_BYTES:
                            raise UnsupportedFile(_too_large(size, part.filename))
                        # Tags cut by a chunk boundary are found in the overlap with the last.
                        window = tail + chunk
                        elements += chunk.count(b"<") - chunk.count(b"</")
                        paragraphs += sum(window.count(tag) for tag in _PARAGRAPH_TAGS)
                        paragraphs -= sum(tail.count(tag) for tag in _PARAGRAPH_TAGS)
                        tail = chunk[-8:]
                        _check_counts(elements, paragraphs)
    except UnsupportedFile:
        raise
    except Exception as error:  # noqa: BLE001 - damaged packages raise all kinds of errors
        raise UnsupportedFile(f"cannot read DOCX: {short_reason(error)}") from None


def _check_counts(elements: int, paragraphs: int) -> None:
    if paragraphs > MAX_PARAGRAPHS:
        raise UnsupportedFile(f"DOCX has over {MAX_PARAGRAPHS:,} paragraphs, too many to read")
    if elements > MAX_ELEMENTS:
        raise UnsupportedFile(f"DOCX has over {MAX_ELEMENTS:,} XML elements, too many to read")


def _too_large(size: int, part: str = "") -> str:
    what = f"its part {part}" if part else "DOCX"
    limit = MAX_XML_PART_BYTES if part else MAX_UNPACKED_BYTES
    return (
        f"too large when decompressed: {what} unpacks to over {size // (1024 * 1024)} MB "
        f"(limit {limit // (1024 * 1024)} MB)"
    )


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
    """Each row as text that reads on its own: "Item: Beans, Cost per month: £180" under a
    header row of labels, else the cell texts joined with " | " (a merged cell counted once)."""
    rows = [_cell_texts(row.cells) for row in table.rows]
    rows = [cells for cells in rows if cells]
    header = rows[0] if len(rows) > 1 else []
    labelled = len(set(header)) == len(header) and all(
        len(cells) == len(header) for cells in rows[1:]
    )
    if header and labelled:
        return [
            LABEL_SEPARATOR.join(
                f"{label}: {value}" for label, value in zip(header, cells, strict=True)
            )
            for cells in rows[1:]
        ]
    return [CELL_SEPARATOR.join(cells) for cells in rows]


def _cell_texts(cells: list[_Cell]) -> list[str]:
    texts: list[str] = []
    for cell in cells:
        text = collapse_whitespace(cell.text)
        if text and (not texts or texts[-1] != text):
            texts.append(text)
    return texts


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
