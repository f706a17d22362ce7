"""HTML: the readable content of the page as headings and paragraphs (selectolax/lexbor)."""

from __future__ import annotations

import codecs
import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from indexer.errors import UnsupportedFile
from indexer.loaders.common import (
    SourceBuilder,
    collapse_whitespace,
    decode_text,
    title_from_stem,
)
from indexer.models import Document

DROPPED_TAGS = frozenset(
    {
        "script", "style", "noscript", "nav", "header", "footer", "aside", "form",
        "template", "svg", "head", "iframe", "object", "canvas", "button", "select",
    }
)  # fmt: skip
HEADING_TAGS = {f"h{level}": level for level in range(1, 7)}
PARAGRAPH_TAGS = frozenset(
    {"p", "li", "blockquote", "pre", "dd", "dt", "td", "th", "figcaption", "caption"}
)
# Elements that start and end a block; anything else (a, span, em, ...) flows inline.
CONTAINER_TAGS = frozenset(
    {
        "html", "body", "main", "article", "section", "div", "ul", "ol", "dl", "table",
        "thead", "tbody", "tfoot", "tr", "figure", "details", "summary", "address",
        "fieldset", "center", "hr", "hgroup", "menu", "picture", "video", "audio",
    }
)  # fmt: skip
BLOCK_TAGS = CONTAINER_TAGS | PARAGRAPH_TAGS | HEADING_TAGS.keys()
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
# Two <br> in a row (marked by newlines while collecting text) separate paragraphs.
LINE_BREAKS = re.compile(r"\n[^\S\n]*\n\s*")
HEAD_SNIFF_BYTES = 4096
# Browsers stop nesting at 512 levels; lexbor does not, and takes quadratic time on deeper
# pages (86 s for 200,000 levels). The depth is estimated before parsing.
MAX_DEPTH = 1000
# Elements whose end tag may be left out (or that have none): a missing end tag is no nesting.
_NOT_NESTING = frozenset(
    {
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "option",
        "optgroup", "thead", "tbody", "tfoot", "colgroup", "caption", "rb", "rt", "rp",
        "rtc", "html", "head", "body", "image", "keygen", "basefont", "bgsound", "frame",
    }
)  # fmt: skip
# Their content is text, not markup, up to their end tag.
_RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed",
                       "noframes", "plaintext"})  # fmt: skip
_TAG = re.compile(r"<(/?)([a-z][^\s/<>]*)[^<>]*?(/?)>")


def load_html(data: bytes, doc_id: str, stem: str) -> Document:
    """Load HTML bytes; the source is the blocks' text joined by blank lines."""
    text, warnings = decode_text(data, _declared_charset(data))
    if nesting_depth(text, MAX_DEPTH) > MAX_DEPTH:
        raise UnsupportedFile(f"HTML elements nested over {MAX_DEPTH:,} levels deep")
    tree = LexborHTMLParser(text)
    builder = _extract(_content_root(tree))
    if tree.body is not None and not any(b.kind == "paragraph" for b in builder.blocks):
        builder = _extract(tree.body)  # <main> may be an empty shell filled in by scripts
    title = _title(tree) or title_from_stem(stem)
    return Document(doc_id, title, builder.source, builder.blocks, "html", warnings=warnings)


def nesting_depth(text: str, limit: int) -> int:
    """How deeply the elements of an HTML text nest, estimated from its tags in one pass.

    An end tag closes the elements left open inside it, as a parser would; elements whose
    end tag is optional do not count. Stops counting past `limit`. Linear in the text.
    """
    lower = text.lower()
    stack: list[str] = []
    open_counts: dict[str, int] = {}
    position = 0
    while (position := lower.find("<", position)) != -1:
        if lower.startswith("<!--", position):
            end = lower.find("-->", position + 4)
            if end == -1:
                break
            position = end + 3
            continue
        match = _TAG.match(lower, position)
        if match is None:
            position += 1
            continue
        position = match.end()
        closing, name, self_closing = match.groups()
        if closing:
            if open_counts.get(name):
                while (top := stack.pop()) != name:
                    open_counts[top] -= 1
                open_counts[name] -= 1
            continue
        if name in _RAW_TEXT:
            end = lower.find(f"</{name}", position)
            if end == -1:
                break
            position = end
            continue
        if name in _NOT_NESTING or (
            self_closing and (open_counts.get("svg") or open_counts.get("math"))
        ):
            continue  # "<x/>" closes itself only in SVG and MathML
        stack.append(name)
        open_counts[name] = open_counts.get(name, 0) + 1
        if len(stack) > limit:
            break
    return len(stack)


def _declared_charset(data: bytes) -> str | None:
    match = META_CHARSET.search(data[:HEAD_SNIFF_BYTES])
    if match is None:
        return None
    name = match.group(1).decode("ascii")
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    # As browsers do: pages labelled latin-1 or ASCII are really windows-1252, and a UTF-16
    # label in the markup itself cannot be true (a BOM, checked first, would say so).
    if codec in ("iso8859-1", "ascii"):
        return "cp1252"
    return "utf-8" if codec.startswith(("utf-16", "utf-32")) else codec


def _content_root(tree: LexborHTMLParser) -> LexborNode | None:
    """<main>, else the only <article>, else <body>."""
    main = tree.css_first("main")
    if main is not None:
        return main
    articles = tree.css("article")
    return articles[0] if len(articles) == 1 else tree.body


def _title(tree: LexborHTMLParser) -> str:
    title = tree.head.css_first("title") if tree.head is not None else None
    if title is not None and (text := collapse_whitespace(title.text())):
        return text
    h1 = tree.css_first("h1")
    if h1 is not None and (text := collapse_whitespace(h1.text())):
        return text
    return ""


def _extract(root: LexborNode | None) -> SourceBuilder:
    builder = SourceBuilder()
    if root is not None:
        _BlockCollector(builder).walk(root)
    return builder


class _BlockCollector:
    """Walks the DOM in document order, collecting text runs and cutting them at block edges."""

    def __init__(self, builder: SourceBuilder) -> None:
        self.builder = builder
        self.run: list[str] = []
        self.heading_levels: list[int] = []  # innermost heading being read, if any
        self.pre_depth = 0
        self.article_depth = 0

    def walk(self, root: LexborNode) -> None:
        # Iterative, so deeply nested pages cannot hit the recursion limit.
        stack: list[tuple[LexborNode, bool]] = [(root, False)]
        while stack:
            node, leaving = stack.pop()
            if leaving:
                self._leave(node.tag or "")
                continue
            if node.is_text_node:
                self._text(node.text_content or "")
                continue
            tag = node.tag or ""
            if not node.is_element_node or self._dropped(tag):
                continue
            self._enter(tag)
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(list(node.iter(include_text=True))))
        self._flush()

    def _dropped(self, tag: str) -> bool:
        # A page <header> is site chrome; an article's <header> holds its title.
        return tag in DROPPED_TAGS and not (tag == "header" and self.article_depth)

    def _text(self, text: str) -> None:
        self.run.append(text if self.pre_depth else re.sub(r"\s+", " ", text))

    def _enter(self, tag: str) -> None:
        if tag == "br":
            self.run.append("\n")
        elif tag in BLOCK_TAGS:
            self._flush()
            if tag in HEADING_TAGS:
                self.heading_levels.append(HEADING_TAGS[tag])
            elif tag == "pre":
                self.pre_depth += 1
            elif tag == "article":
                self.article_depth += 1

    def _leave(self, tag: str) -> None:
        if tag not in BLOCK_TAGS:
            return
        self._flush()
        if tag in HEADING_TAGS:
            self.heading_levels.pop()
        elif tag == "pre":
            self.pre_depth -= 1
        elif tag == "article":
            self.article_depth -= 1

    def _flush(self) -> None:
        text = "".join(self.run)
        self.run = []
        if self.pre_depth:
            lines = (line.rstrip() for line in text.strip("\n").split("\n"))
            self.builder.add("paragraph", "\n".join(line for line in lines if line.strip()))
        elif self.heading_levels:
            level = self.heading_levels[-1]
            self.builder.add("heading", collapse_whitespace(text), level=level)
        else:
            for paragraph in LINE_BREAKS.split(text):
                self.builder.add("paragraph", collapse_whitespace(paragraph))
