"""Document loaders: turn a file into a `Document` of headings and paragraphs with source spans.

One module per format; this one finds files and picks the loader by extension.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexer.errors import UnsupportedFile
from indexer.loaders.common import decode_text, json_safe
from indexer.loaders.discovery import (
    Discovery,
    SkippedPath,
    discover_files,
    document_id,
    find_files,
    readable_name,
)
from indexer.loaders.docx import load_docx
from indexer.loaders.html import load_html
from indexer.loaders.markdown import find_front_matter, load_markdown
from indexer.loaders.pdf import load_pdf
from indexer.loaders.text import load_text
from indexer.models import Document

# Part of an index's chunking signature: bump it whenever a loader changes the text it reads
# from a file (DOCX table rows, say), so that unchanged files are read again.
LOADERS_VERSION = 2

__all__ = [
    "LOADERS_VERSION",
    "SUPPORTED_EXTENSIONS",
    "Discovery",
    "SkippedPath",
    "discover_files",
    "document_id",
    "find_files",
    "load_document",
]

TEXT_EXTENSIONS = frozenset({".txt"})
MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown"})
HTML_EXTENSIONS = frozenset({".html", ".htm"})
SUPPORTED_EXTENSIONS: frozenset[str] = (
    TEXT_EXTENSIONS | MARKDOWN_EXTENSIONS | HTML_EXTENSIONS | {".pdf", ".docx"}
)
BYTES_PER_MB = 1024 * 1024
# A lone surrogate (from a YAML "\ud800" escape, say) cannot be stored as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")


def load_document(path: Path, root: Path, max_bytes: int) -> Document:
    """Load one file as a `Document` whose `doc_id` is its POSIX path relative to `root`.

    Raises `UnsupportedFile` with a short reason when the file cannot be indexed.
    """
    extension = path.suffix.lower()
    if extension not in SUPPORTED_EXTENSIONS:
        raise UnsupportedFile(f"unsupported file type {extension or '(no extension)'}")
    data = _read(path, max_bytes)
    doc_id = document_id(path, root)
    stem = readable_name(path.stem)
    if extension in HTML_EXTENSIONS:
        document = load_html(data, doc_id, stem)
    elif extension == ".pdf":
        document = load_pdf(data, doc_id, stem)
    elif extension == ".docx":
        document = load_docx(data, doc_id, stem)
    else:
        text, warnings = decode_text(data)
        if not text.strip():
            raise UnsupportedFile("empty file")
        front_matter = find_front_matter(text)
        if extension in MARKDOWN_EXTENSIONS or front_matter is not None:
            document = load_markdown(text, doc_id, stem, warnings, front_matter)
        else:
            document = load_text(text, doc_id, stem, warnings)
    if not any(block.kind == "paragraph" for block in document.blocks):
        raise UnsupportedFile("no text found")
    return _storable(document)


def _storable(document: Document) -> Document:
    """The document with any lone surrogate replaced by U+FFFD (one for one: spans hold)."""
    texts = [document.title, document.source, *document.warnings]
    metadata = json_safe(document.metadata)  # plain JSON types, so every string is reached
    if not any(_SURROGATE.search(text) for text in texts) and not _has_surrogate(metadata):
        return document

    def clean(text: str) -> str:
        return _SURROGATE.sub("\ufffd", text)

    return dataclasses.replace(
        document,
        title=clean(document.title),
        source=clean(document.source),
        blocks=[dataclasses.replace(b, text=clean(b.text)) for b in document.blocks],
        metadata=_clean_json(metadata, clean),
        warnings=[clean(warning) for warning in document.warnings],
    )


def _has_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogate(key) or _has_surrogate(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    return False


def _clean_json(value: object, clean: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(str(key)): _clean_json(item, clean) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean_json(item, clean) for item in value]
    return value


def _read(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, read once, after checking its size so large files are never read."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UnsupportedFile(
                f"file is {_megabytes(size)}, over the {_megabytes(max_bytes)} limit"
            )
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except FileNotFoundError:
        raise UnsupportedFile("file disappeared during indexing") from None
    except IsADirectoryError:
        raise UnsupportedFile("not a regular file") from None
    except OSError as error:
        raise UnsupportedFile(f"cannot read file: {error.strerror or error}") from None
    if len(data) > max_bytes:  # it grew since stat
        raise UnsupportedFile(f"file is over the {_megabytes(max_bytes)} limit")
    if not data.strip():
        raise UnsupportedFile("empty file")
    return data


def _megabytes(size: int) -> str:
    return f"{size / BYTES_PER_MB:.1f} MB"
