"""Markdown (and text files with YAML front matter): headings, paragraphs, inline markup stripped.

Spans index the full file text, front matter included; `Block.offsets` map the clean text of a
block back to the markup it came from.
"""

from __future__ import annotations

import html
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from indexer.loaders.common import (
    has_blank_line,
    iter_lines,
    json_safe,
    strip_span,
    title_from_stem,
)
from indexer.models import Block, BlockKind, Document

FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)^(?:---|\.\.\.)[ \t]*$\n?", re.DOTALL | re.MULTILINE)
FRONT_MATTER_KEY = re.compile(r"[A-Za-z_][\w-]*[ \t]*:")
ATX_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
SETEXT_UNDERLINE = re.compile(r" {0,3}(=+|-+)[ \t]*")
THEMATIC_BREAK = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*")
LINK_DEFINITION = re.compile(r" {0,3}\[[^\]]+\]:[ \t]*\S+.*")
# Blockquote markers and bullet list markers at the start of each line of a paragraph.
LINE_MARKERS = re.compile(r"^[ \t]*(?:>[ \t]?)*[ \t]*(?:[-*+][ \t]+)?", re.MULTILINE)
HTML_MARKUP = re.compile(
    r"<(?:(?P<comment>!--)|(?P<raw>script|style)\b[^>]*>)"  # removed up to their end
    r"|<(?P<url>(?:https?|ftp|mailto):[^<>\s]+|[^<>\s@]+@[^<>\s@]+\.[^<>\s@]+)>"  # autolink
    r"|</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>",  # tag
    re.IGNORECASE,
)
RAW_END = {
    "!--": re.compile("-->"),
    "script": re.compile(r"</script\s*>", re.IGNORECASE),
    "style": re.compile(r"</style\s*>", re.IGNORECASE),
}
ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
# A backslash before ASCII punctuation, or a run of backticks.
ESCAPE_OR_CODE = re.compile(r"\\[!-/:-@\[-`{-~]|`+")
BACKTICKS = re.compile(r"`+")
BRACKETS = re.compile(r"[\[\]()]")
# The content of an emphasis cannot hold its own delimiter, which keeps matching linear.
EMPHASIS = (
    re.compile(r"\*\*(?=\S)((?:[^*]|\*(?!\*))+?)(?<=\S)\*\*"),
    re.compile(r"(?<!\w)__(?=\S)((?:[^_]|_(?!_))+?)(?<=\S)__(?!\w)"),
    re.compile(r"\*(?=\S)([^*]+?)(?<=\S)\*"),
    # Underscores inside words ("snake_case_name") are not emphasis.
    re.compile(r"(?<!\w)_(?=\S)([^_]+?)(?<=\S)_(?!\w)"),
    re.compile(r"~~(?=\S)((?:[^~]|~(?!~))+?)(?<=\S)~~"),
)
REMOVED = "\x00"
PROTECTED = "a"


@dataclass(frozen=True, slots=True)
class FrontMatter:
    """A leading `---` block: where the body starts, and its YAML mapping (None if invalid)."""

    end: int
    data: dict[str, Any] | None


def find_front_matter(text: str) -> FrontMatter | None:
    """The YAML front matter at the very start of `text`, if there is one.

    A `---` block whose YAML is broken still counts when it starts like one ("title: ..."),
    so a stray colon in a title does not turn the front matter into body text.
    """
    match = FRONT_MATTER.match(text)
    if match is None:
        return None
    content = match.group(1)
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError:
        looks_like_yaml = FRONT_MATTER_KEY.match(content.lstrip()) is not None
        return FrontMatter(match.end(), None) if looks_like_yaml else None
    if data is None:
        return FrontMatter(match.end(), {})
    return FrontMatter(match.end(), json_safe(data)) if isinstance(data, dict) else None


def load_markdown(
    text: str, doc_id: str, stem: str, warnings: list[str], front_matter: FrontMatter | None
) -> Document:
    """Load decoded Markdown; front matter is left out of blocks, but spans index all of `text`."""
    metadata: dict[str, Any] = {}
    body_start = 0
    if front_matter is not None:
        body_start = front_matter.end
        if front_matter.data is None:
            warnings.append("front matter is not valid YAML; ignored")
        else:
            metadata = front_matter.data
    blocks = parse_blocks(text, body_start)
    title = _title(metadata, blocks) or title_from_stem(stem)
    return Document(doc_id, title, text, blocks, "markdown", metadata, warnings)


def _title(metadata: dict[str, Any], blocks: list[Block]) -> str:
    title = metadata.get("title")
    if isinstance(title, str | int | float) and str(title).strip():
        return str(title).strip()
    for block in blocks:
        if block.kind == "heading" and block.level == 1:
            return block.text
    return ""


def parse_blocks(text: str, body_start: int = 0) -> list[Block]:
    """Headings, paragraphs and fenced code of the Markdown in `text[body_start:]`."""
    return _BlockParser(text, one_per_line=not has_blank_line(text[body_start:])).parse(body_start)


class _BlockParser:
    """A line-based reader of the block structure CommonMark documents mostly use."""

    def __init__(self, text: str, *, one_per_line: bool) -> None:
        self.text = text
        self.one_per_line = one_per_line
        self.blocks: list[Block] = []
        self.paragraph: tuple[int, int] | None = None

    def parse(self, start: int) -> list[Block]:
        text = self.text
        fence: str | None = None
        fence_content_start = 0
        for line_start, line_end in iter_lines(text, start):
            line = text[line_start:line_end]
            if fence is not None:
                stripped = line.strip()
                if stripped.startswith(fence) and not stripped.strip(fence[0]):
                    self._add_code(fence_content_start, line_start)
                    fence = None
                continue
            if not line.strip():
                self._flush()
            elif (match := FENCE.match(line)) and not _is_inline_code(line, match):
                self._flush()
                fence = match.group(1)
                fence_content_start = line_end + 1
            elif match := ATX_HEADING.fullmatch(text, line_start, line_end):
                self._flush()
                if match.group(2) is not None:
                    level = len(match.group(1))
                    self._add_heading(line_start, line_end, level, *match.span(2))
            elif self.paragraph and (match := SETEXT_UNDERLINE.fullmatch(line)):
                content_start, content_end = self.paragraph
                self.paragraph = None
                level = 1 if match.group(1)[0] == "=" else 2
                self._add_heading(content_start, line_end, level, content_start, content_end)
            elif THEMATIC_BREAK.fullmatch(line):
                self._flush()
            elif self.paragraph is None and LINK_DEFINITION.fullmatch(line):
                continue
            else:
                if self.one_per_line:
                    self._flush()
                first = self.paragraph[0] if self.paragraph else line_start
                self.paragraph = (first, line_end)
        if fence is not None:
            self._add_code(fence_content_start, len(text))
        self._flush()
        return self.blocks

    def _flush(self) -> None:
        if self.paragraph is None:
            return
        start, end = strip_span(self.text, *self.paragraph)
        self.paragraph = None
        self._add("paragraph", start, end, strip_inline(self.text, start, end, line_markers=True))

    def _add_code(self, start: int, end: int) -> None:
        start, end = strip_span(self.text, start, min(end, len(self.text)))
        if start < end:
            self.blocks.append(Block("paragraph", self.text[start:end], start, end))

    def _add_heading(
        self, start: int, end: int, level: int, content_start: int, content_end: int
    ) -> None:
        start, end = strip_span(self.text, start, end)
        content_start, content_end = strip_span(self.text, content_start, content_end)
        clean = strip_inline(self.text, content_start, content_end, line_markers=False)
        self._add("heading", start, end, clean, level=level)

    def _add(
        self,
        kind: BlockKind,
        start: int,
        end: int,
        clean: tuple[str, Sequence[int]],
        level: int = 1,
    ) -> None:
        text, offsets = clean
        if not text:
            return
        unchanged = text == self.text[start:end]
        self.blocks.append(
            Block(kind, text, start, end, None if unchanged else offsets, level=level)
        )


def _bracket_pairs(view: str) -> dict[int, int]:
    """The matching "]" of each "[" and ")" of each "(" in `view`, nesting respected."""
    closing_of: dict[int, int] = {}
    open_squares: list[int] = []
    open_parens: list[int] = []
    for match in BRACKETS.finditer(view):
        position, char = match.start(), match.group()
        if char == "[":
            open_squares.append(position)
        elif char == "(":
            open_parens.append(position)
        elif char == "]" and open_squares:
            closing_of[open_squares.pop()] = position
        elif char == ")" and open_parens:
            closing_of[open_parens.pop()] = position
    return closing_of


def _is_inline_code(line: str, fence: re.Match[str]) -> bool:
    # A backtick fence's info string cannot hold backticks: "```a```" is inline code.
    return fence.group(1)[0] == "`" and "`" in line[fence.end() :]


def strip_inline(
    source: str, start: int, end: int, *, line_markers: bool
) -> tuple[str, Sequence[int]]:
    """Clean text of `source[start:end]` with inline markup removed, and its source offsets."""
    raw = source[start:end]
    markup = _InlineMarkup(raw)
    if line_markers:
        for match in LINE_MARKERS.finditer(raw):
            markup.remove(*match.span())
    markup.remove_escapes_and_code()
    markup.remove_html()
    markup.remove_links_and_images()
    markup.remove_emphasis()
    markup.decode_entities()
    text, positions = markup.result()
    # 8 bytes per character: a tuple of ints took 36, and a 19 MB file outgrew the loader's
    # memory limit.
    return text, array("q", [start + position for position in positions])


class _InlineMarkup:
    """Marks which characters of a raw block survive as clean text.

    `view` mirrors the raw text for the regexes: removed characters become NUL and protected
    ones (code, escaped characters) a letter, so neither is mistaken for markup.
    """

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.view = list(raw)
        self.kept = [True] * len(raw)
        self.replacements: dict[int, str] = {}

    def remove(self, start: int, end: int) -> None:
        self.kept[start:end] = [False] * (end - start)
        self.view[start:end] = REMOVED * (end - start)

    def protect(self, start: int, end: int) -> None:
        self.view[start:end] = PROTECTED * (end - start)

    def remove_escapes_and_code(self) -> None:
        raw = self.raw
        resume = 0
        for match in ESCAPE_OR_CODE.finditer(raw):
            start = match.start()
            if start < resume or self.view[start] != raw[start]:
                continue
            if raw[start] == "\\":
                self.remove(start, start + 1)
                self.protect(start + 1, start + 2)
            else:
                resume = self._code_span(start, match.end())

    def _code_span(self, opening: int, content_start: int) -> int:
        """Handle the code span opened by the backticks at `opening`; return where it ends."""
        ticks = content_start - opening
        for closing in BACKTICKS.finditer(self.raw, content_start):
            if closing.end() - closing.start() == ticks:
                self.remove(opening, content_start)
                self.protect(content_start, closing.start())
                self.remove(closing.start(), closing.end())
                return closing.end()
        self.protect(opening, content_start)  # no closing run: the backticks are literal
        return content_start

    def remove_html(self) -> None:
        view = "".join(self.view)
        unclosed: set[str] = set()  # once an end marker is missing, later ones are missing too
        position = 0
        while match := HTML_MARKUP.search(view, position):
            start, end = match.span()
            position = end
            if match.group("url"):
                self.remove(start, start + 1)
                self.protect(start + 1, end - 1)
                self.remove(end - 1, end)
            elif match.group("comment") or match.group("raw"):
                kind = "!--" if match.group("comment") else match.group("raw").lower()
                closing = None if kind in unclosed else RAW_END[kind].search(view, end)
                if closing is None:
                    unclosed.add(kind)
                    continue
                self.remove(start, closing.end())
                position = closing.end()
            else:
                self.remove(start, end)

    def remove_links_and_images(self) -> None:
        """`[text](url)` and `[text][ref]` keep "text"; `![alt](url)` goes entirely."""
        view = "".join(self.view)
        closing_of = _bracket_pairs(view)
        for opening in sorted(position for position in closing_of if view[position] == "["):
            if not self.kept[opening]:  # inside an image removed already
                continue
            label_end = closing_of[opening]
            target = label_end + 1
            if view[target : target + 1] not in ("(", "[") or target not in closing_of:
                continue
            link_end = closing_of[target] + 1
            if opening and view[opening - 1] == "!" and self.kept[opening - 1]:
                self.remove(opening - 1, link_end)  # an image, alt text and all
            else:  # a link: the label stays, and may hold more links or images
                self.remove(opening, opening + 1)
                self.remove(label_end, link_end)

    def remove_emphasis(self) -> None:
        for pattern in EMPHASIS:
            for match in pattern.finditer("".join(self.view)):
                content_start, content_end = match.span(1)
                self.remove(match.start(), content_start)
                self.remove(content_end, match.end())

    def decode_entities(self) -> None:
        """`&amp;` -> "&": the decoded character takes the offset of the "&"."""
        for match in ENTITY.finditer("".join(self.view)):
            decoded = html.unescape(match.group())
            if len(decoded) == 1:
                self.replacements[match.start()] = decoded
                self.remove(match.start() + 1, match.end())

    def result(self) -> tuple[str, list[int]]:
        """The clean text, stripped, and the raw position of each of its characters."""
        positions = [position for position, kept in enumerate(self.kept) if kept]
        chars = [self.replacements.get(position, self.raw[position]) for position in positions]
        first, last = 0, len(chars)
        while first < last and chars[first].isspace():
            first += 1
        while last > first and chars[last - 1].isspace():
            last -= 1
        return "".join(chars[first:last]), positions[first:last]
