"""Document loaders: turn a file into a `Document` of headings and paragraphs with source spans.

One module per format; this one finds files and picks the loader by extension.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from indexer.errors import UnsupportedFile
from indexer.loaders.common import decode_text
from indexer.loaders.docx import load_docx
from indexer.loaders.html import load_html
from indexer.loaders.markdown import find_front_matter, load_markdown
from indexer.loaders.pdf import load_pdf
from indexer.loaders.text import load_text
from indexer.models import Document

__all__ = ["SUPPORTED_EXTENSIONS", "discover_files", "load_document"]

TEXT_EXTENSIONS = frozenset({".txt"})
MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown"})
HTML_EXTENSIONS = frozenset({".html", ".htm"})
SUPPORTED_EXTENSIONS: frozenset[str] = (
    TEXT_EXTENSIONS | MARKDOWN_EXTENSIONS | HTML_EXTENSIONS | {".pdf", ".docx"}
)
BYTES_PER_MB = 1024 * 1024


def discover_files(root: Path, exclude: Sequence[Path] = ()) -> list[Path]:
    """Every regular file under `root`, sorted, except hidden ones and those under `exclude`.

    Files of unsupported types are included so the caller can report them as skipped.
    """
    excluded = {path.resolve() for path in exclude}
    found: list[Path] = []
    for directory, subdirectories, files in os.walk(root):
        here = Path(directory)
        subdirectories[:] = [
            name
            for name in subdirectories
            if not name.startswith(".") and (here / name).resolve() not in excluded
        ]
        for name in files:
            path = here / name
            if name.startswith(".") or not path.is_file() or path.resolve() in excluded:
                continue
            found.append(path)
    return sorted(found)


def load_document(path: Path, root: Path, max_bytes: int) -> Document:
    """Load one file as a `Document` whose `doc_id` is its POSIX path relative to `root`.

    Raises `UnsupportedFile` with a short reason when the file cannot be indexed.
    """
    extension = path.suffix.lower()
    if extension not in SUPPORTED_EXTENSIONS:
        raise UnsupportedFile(f"unsupported file type {extension or '(no extension)'}")
    data = _read(path, max_bytes)
    doc_id = _relative_id(path, root)
    stem = path.stem
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
    return document


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


def _relative_id(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.resolve().relative_to(root.resolve()).as_posix()
