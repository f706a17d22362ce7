"""Helpers shared by the format loaders: decoding, block spans, and extracted-text sources."""

from __future__ import annotations

import codecs
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

from indexer.errors import UnsupportedFile
from indexer.models import Block, BlockKind

SNIFF_BYTES = 8192
MAX_CONTROL_RATIO = 0.10
# Control bytes that plain text legitimately contains: tab, newline, form feed, carriage return.
_TEXT_CONTROL_BYTES = frozenset(b"\t\n\f\r")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_WHITESPACE = re.compile(r"\s+")
PARAGRAPH_SEPARATOR = "\n\n"


def looks_binary(data: bytes) -> bool:
    """True if the start of `data` has NUL bytes or too many control characters for text."""
    sample = data[:SNIFF_BYTES]
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    controls = sum(1 for byte in sample if byte < 0x20 and byte not in _TEXT_CONTROL_BYTES)
    return controls / len(sample) > MAX_CONTROL_RATIO


def decode_text(data: bytes, declared_encoding: str | None = None) -> tuple[str, list[str]]:
    """Decode file bytes to text with "\\n" newlines and no BOM; return it and any warnings.

    Order: a byte-order mark, then `declared_encoding` (e.g. an HTML meta charset), then
    UTF-8, then cp1252 and latin-1 with a warning. Binary content raises `UnsupportedFile`.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # UTF-16 text is full of NUL bytes, so it must be recognised before the binary check.
        try:
            return normalise_newlines(data.decode("utf-16")), []
        except UnicodeDecodeError:
            raise UnsupportedFile("binary content, not text") from None
    if looks_binary(data):
        raise UnsupportedFile("binary content, not text")
    if declared_encoding and not data.startswith(codecs.BOM_UTF8):
        try:
            return normalise_newlines(data.decode(declared_encoding)), []
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return normalise_newlines(data.decode("utf-8-sig")), []
    except UnicodeDecodeError:
        pass
    for encoding in ("cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return normalise_newlines(text), [f"not valid UTF-8; decoded as {encoding}"]
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def normalise_newlines(text: str) -> str:
    """Turn CRLF and CR into LF and drop a leading BOM."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (newlines included) become one space; ends are stripped."""
    return _WHITESPACE.sub(" ", text).strip()


def title_from_stem(stem: str) -> str:
    """A readable title from a file name: 'annual_report-2024' -> 'annual report 2024'."""
    return collapse_whitespace(stem.replace("_", " ").replace("-", " ")) or stem


def has_blank_line(text: str) -> bool:
    """True if a blank line separates two non-blank lines of `text`."""
    return _BLANK_LINE.search(text.strip()) is not None


def iter_lines(text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, end) of each line of `text[start:end]`, without its newline."""
    end = len(text) if end is None else end
    position = start
    while position <= end:
        newline = text.find("\n", position, end)
        line_end = end if newline == -1 else newline
        yield position, line_end
        if newline == -1:
            return
        position = newline + 1


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Narrow `text[start:end]` to exclude surrounding whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def paragraph_spans(
    text: str, start: int = 0, end: int | None = None, *, one_per_line: bool = False
) -> list[tuple[int, int]]:
    """Spans of the blank-line separated blocks of `text[start:end]` (or of each line)."""
    spans: list[tuple[int, int]] = []
    block_start: int | None = None
    block_end = 0
    for line_start, line_end in iter_lines(text, start, end):
        if text[line_start:line_end].strip():
            if block_start is None:
                block_start = line_start
            block_end = line_end
            if not one_per_line:
                continue
        if block_start is not None:
            spans.append(strip_span(text, block_start, block_end))
            block_start = None
    if block_start is not None:
        spans.append(strip_span(text, block_start, block_end))
    return spans


class SourceBuilder:
    """Builds the source of an extracted-text format: block texts joined by blank lines."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self.blocks: list[Block] = []

    def add(self, kind: BlockKind, text: str, *, level: int = 1, page: int | None = None) -> None:
        """Append a block; text is stripped and empty text is ignored."""
        text = text.strip()
        if not text:
            return
        if self._parts:
            self._parts.append(PARAGRAPH_SEPARATOR)
            self._length += len(PARAGRAPH_SEPARATOR)
        start = self._length
        self._parts.append(text)
        self._length += len(text)
        self.blocks.append(Block(kind, text, start, self._length, page=page, level=level))

    @property
    def source(self) -> str:
        return "".join(self._parts)


def short_reason(error: Exception) -> str:
    """The first line of an exception's message, trimmed, for a one-line skip reason."""
    lines = str(error).strip().splitlines()
    message = lines[0].strip().strip("\"'").rstrip(".")[:120] if lines else ""
    return message or type(error).__name__


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy of a metadata value (dates become strings)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.date | dt.time):
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    return str(value)
