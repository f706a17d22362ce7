"""Loaders: blocks, titles and source spans for every format, and the reasons files are skipped."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
import pytest
from reportlab.lib import pdfencrypt
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.pdfgen import canvas
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

from indexer.errors import UnsupportedFile
from indexer.loaders import SUPPORTED_EXTENSIONS, discover_files, load_document
from indexer.models import Document

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
MARKDOWN_SEED = SEEDS / "000_230d891a6c421cf7.txt"
PLAIN_SEED = SEEDS / "004_fc6fad951788ea23.txt"
MB = 1024 * 1024
LONG_SENTENCE = (
    "The committee reviewed the annual budget and found that spending on roads and bridges "
    "exceeded the plan by a wide margin. "
)


def load(path: Path, root: Path | None = None, max_bytes: int = 20 * MB) -> Document:
    return load_document(path, root or path.parent, max_bytes)


def write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def assert_spans_valid(document: Document) -> None:
    """The citation contract: every block's text maps back into the source."""
    source = document.source
    for block in document.blocks:
        assert 0 <= block.start < block.end <= len(source)
        raw = source[block.start : block.end]
        assert raw == raw.strip()
        assert block.text and block.text == block.text.strip()
        if block.offsets is None:
            assert block.text == raw
            continue
        assert len(block.offsets) == len(block.text)
        assert all(block.start <= offset < block.end for offset in block.offsets)
        assert all(a < b for a, b in zip(block.offsets, block.offsets[1:], strict=False))
        assert all(source[i] == char for i, char in zip(block.offsets, block.text, strict=True))


def kinds(document: Document) -> list[tuple[str, str]]:
    return [(block.kind, block.text) for block in document.blocks]


def make_pdf(path: Path, *, title: str | None = "Annual Report 2024") -> Path:
    styles = getSampleStyleSheet()
    template = SimpleDocTemplate(str(path), pagesize=A4, title=title, author="Finance Team")
    template.build(
        [
            Paragraph("Budget Overview", styles["Title"]),
            Paragraph("1. Introduction", styles["Heading1"]),
            Paragraph(LONG_SENTENCE * 3 + "Costs were high.", styles["BodyText"]),
            Paragraph(
                "Hiring grew slowly in the internationalization team. " * 3, styles["BodyText"]
            ),
            Paragraph("Results", styles["Heading2"]),
            Paragraph(LONG_SENTENCE * 2, styles["BodyText"]),
            PageBreak(),
            Paragraph("The second page talks about the next year. " * 4, styles["BodyText"]),
        ]
    )
    return path


def make_docx(path: Path, *, core_title: str = "") -> Path:
    document = docx.Document()
    document.core_properties.title = core_title
    document.add_paragraph("Quarterly Review", style="Title")
    document.add_heading("Overview", level=1)
    document.add_paragraph("Sales rose in the third quarter.")
    document.add_paragraph("   ")
    document.add_paragraph("Returns fell.", style="List Bullet")
    document.add_heading("Numbers", level=2)
    table = document.add_table(rows=2, cols=2)
    for (row, column), text in {
        (0, 0): "Region",
        (0, 1): "Sales",
        (1, 0): "North",
        (1, 1): "12",
    }.items():
        table.cell(row, column).text = text
    document.add_paragraph("That is all.")
    document.save(str(path))
    return path


MARKDOWN = """\
# The *Guide*

Read the [manual](https://example.com/a_(b)) first ![logo](logo.png), then **run** it.

Keep snake_case_names, `code *as is*`, \\*stars\\* and <span class="x">inline</span> &amp; all.

[![](https://img.example/badge.svg)](https://ci.example)

Install Steps
-------------

- Download it
- Unpack _it_

```sh
make install

make test
```
"""

HTML = """\
<!doctype html>
<html><head><meta charset="utf-8"><title> Field  Notes </title>
<style>p { color: red }</style></head>
<body>
<header><h1>Site banner</h1><nav><a href="/">Home</a></nav></header>
<main>
  <h1>Birds of the Marsh</h1>
  <p>Herons   wade <em>slowly</em>
     at dawn.</p>
  <p>Hello <script>alert(1)</script>world</p>
  <p>&lt;script&gt;alert(1)&lt;/script&gt;</p>
  <div>Bare text in a div<ul><li>Egret</li><li>Bittern</li></ul></div>
  <h2>Sightings</h2>
  <table><tr><th>Date</th><td>May 3</td></tr></table>
  <blockquote>Quiet is the marsh.</blockquote>
</main>
<aside>Advert</aside><footer>Copyright</footer>
</body></html>
"""

PLAIN = """\
Harbour Survey

1. Method

We counted boats at the harbour every morning for a month.
The counts were written down by hand.

1.1. Weather

Rain stopped the count twice.

2. Findings

Most boats were small.
"""


def fixture_documents(tmp_path: Path) -> dict[str, Document]:
    return {
        "markdown": load(write(tmp_path, "guide.md", MARKDOWN)),
        "html": load(write(tmp_path, "notes.html", HTML)),
        "text": load(write(tmp_path, "survey.txt", PLAIN)),
        "pdf": load(make_pdf(tmp_path / "report.pdf")),
        "docx": load(make_docx(tmp_path / "review.docx")),
        "seed-markdown": load(MARKDOWN_SEED),
        "seed-plain": load(PLAIN_SEED),
    }


def test_supported_extensions() -> None:
    assert {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"} == SUPPORTED_EXTENSIONS


def test_span_invariant_holds_for_every_block_of_every_format(tmp_path: Path) -> None:
    for name, document in fixture_documents(tmp_path).items():
        assert document.blocks, name
        assert_spans_valid(document)


# Seeds


def test_markdown_seed_with_front_matter_in_a_txt_file() -> None:
    document = load(MARKDOWN_SEED, SEEDS)
    assert document.doc_id == "000_230d891a6c421cf7.txt"
    assert document.format == "markdown"
    assert document.title == "Will Trump’s ‘tough love’ on Kim yield results or backfire?"
    assert document.metadata["date"] == "2025-02-13 04:31:13"
    assert document.metadata["tags"] == ["thehill"]
    assert document.metadata["comments"] is False
    body_start = document.source.index("\n---\n", 3) + len("\n---\n")
    assert all(block.start >= body_start for block in document.blocks)
    assert all(block.kind == "paragraph" for block in document.blocks)
    texts = [block.text for block in document.blocks]
    assert len(texts) == 16
    assert texts[0].startswith("As President Trump begins his second term")
    link_text = "recent acknowledgment of North Korea as a “nuclear power” suggests"
    assert link_text in texts[0].replace("\xa0", " ")
    assert not any("](" in text or "http" in text or "op2.png" in text for text in texts)
    assert (
        texts[-2]
        == "Imran Khalid is a physician and has a master’s degree in international relations."
    )
    assert texts[-1] == "thehill"
    assert_spans_valid(document)


def test_plain_seed_roman_numeral_headings_and_bullets() -> None:
    document = load(PLAIN_SEED, SEEDS)
    assert document.format == "text"
    # no title line, and the file name is a digest: the first sentence, as a reader would
    assert document.title == (
        "Hyeong Jung Park, Emeritus Research Fellow at the Korea Institute for National "
        "Unification…"
    )
    headings = [block.text for block in document.blocks if block.kind == "heading"]
    assert headings == [
        "I. North Korea's Perception and Response to U.S. Policy under Trump",
        "II. Prospects for Kim Jong Un's Policy toward Trump",
        "III. Conclusion",
        "References",
    ]
    assert sum(block.kind == "paragraph" for block in document.blocks) == 24
    pairs = kinds(document)
    assert ("paragraph", "■ See Korean Version on EAI Website") in pairs
    references = pairs.index(("heading", "References"))
    assert pairs[references + 1][0] == "paragraph"
    assert pairs[references + 1][1].startswith("Horton, Alex and Hannah Natanson. 2025.")
    conclusion = pairs.index(("heading", "III. Conclusion"))
    assert pairs[conclusion + 1][1].startswith("According to its stated policy")
    assert pairs[-1] == ("paragraph", "For inquiries: 02 2277 1683 (ext. 208) | crkim@eai.or.kr")
    assert_spans_valid(document)


# Plain text


def test_plain_text_blank_line_paragraphs_and_numbered_headings(tmp_path: Path) -> None:
    document = load(write(tmp_path, "survey.txt", PLAIN))
    assert document.title == "Harbour Survey"
    assert [(block.kind, block.level, block.text.split("\n")[0]) for block in document.blocks] == [
        ("heading", 1, "Harbour Survey"),
        ("heading", 1, "1. Method"),
        ("paragraph", 1, "We counted boats at the harbour every morning for a month."),
        ("heading", 2, "1.1. Weather"),
        ("paragraph", 1, "Rain stopped the count twice."),
        ("heading", 1, "2. Findings"),
        ("paragraph", 1, "Most boats were small."),
    ]
    assert document.blocks[2].text.endswith("\nThe counts were written down by hand.")


def test_plain_text_lists_and_last_line_are_not_headings(tmp_path: Path) -> None:
    text = (
        "Shopping List\n1. Flour\n2. Sugar\nMix it all in a bowl and bake for an hour.\nThe End\n"
    )
    document = load(write(tmp_path, "recipe.txt", text))
    assert kinds(document) == [
        ("heading", "Shopping List"),
        ("paragraph", "1. Flour"),
        ("paragraph", "2. Sugar"),
        ("paragraph", "Mix it all in a bowl and bake for an hour."),
        ("paragraph", "The End"),
    ]


def test_plain_text_bom_and_crlf_are_normalised_before_spans(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.txt", "\ufeffFirst line here.\r\n\r\nSecond one.\r\n".encode())
    document = load(path)
    assert document.source == "First line here.\n\nSecond one.\n"
    assert kinds(document) == [("paragraph", "First line here."), ("paragraph", "Second one.")]
    assert document.title == "notes"
    assert_spans_valid(document)


def test_non_utf8_text_loads_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "legacy.txt", "Caf\u00e9 prices rose \u2013 again.".encode("cp1252"))
    document = load(path)
    assert document.blocks[0].text == "Café prices rose – again."
    assert document.warnings == ["not valid UTF-8; decoded as cp1252"]


def test_utf16_text_with_bom_loads(tmp_path: Path) -> None:
    document = load(write(tmp_path, "wide.txt", "Hello from Notepad.".encode("utf-16")))
    assert kinds(document) == [("paragraph", "Hello from Notepad.")]


# Markdown


def test_markdown_blocks_titles_and_code(tmp_path: Path) -> None:
    document = load(write(tmp_path, "guide.md", MARKDOWN))
    assert document.format == "markdown"
    assert document.title == "The Guide"
    assert kinds(document) == [
        ("heading", "The Guide"),
        ("paragraph", "Read the manual first , then run it."),
        ("paragraph", "Keep snake_case_names, code *as is*, *stars* and inline & all."),
        ("heading", "Install Steps"),
        ("paragraph", "Download it\nUnpack it"),
        ("paragraph", "make install\n\nmake test"),
    ]
    assert [block.level for block in document.blocks if block.kind == "heading"] == [1, 2]


def test_markdown_stripping_keeps_spans_in_the_original_text(tmp_path: Path) -> None:
    document = load(write(tmp_path, "guide.md", MARKDOWN))
    block = document.blocks[1]
    assert block.offsets is not None
    assert document.source[block.start : block.end].startswith("Read the [manual](https://")
    start = block.text.index("manual")
    char_start, char_end = block.source_span(start, start + len("manual"))
    assert document.source[char_start:char_end] == "manual"
    char_start, char_end = block.source_span(0, len("Read the manual first"))
    assert (
        document.source[char_start:char_end] == "Read the [manual](https://example.com/a_(b)) first"
    )


def test_markdown_image_only_paragraphs_are_dropped(tmp_path: Path) -> None:
    text = "Intro text.\n\n![chart](chart.png)\n\n[![](badge.svg)](https://ci)\n\nOutro text.\n"
    document = load(write(tmp_path, "images.md", text))
    assert kinds(document) == [("paragraph", "Intro text."), ("paragraph", "Outro text.")]
    assert document.title == "images"


def test_front_matter_in_txt_becomes_metadata(tmp_path: Path) -> None:
    text = (
        "---\ntitle: Trip Notes\ndate: 2024-05-01\ntags: [travel, rail]\n---\n\nWe took a train.\n"
    )
    document = load(write(tmp_path, "trip.txt", text))
    assert document.format == "markdown"
    assert document.title == "Trip Notes"
    assert document.metadata == {
        "title": "Trip Notes",
        "date": "2024-05-01",
        "tags": ["travel", "rail"],
    }
    assert kinds(document) == [("paragraph", "We took a train.")]
    assert document.blocks[0].start == text.index("We took")


def test_broken_front_matter_is_left_out_with_a_warning(tmp_path: Path) -> None:
    text = "---\ntitle: Bad: colon: here\n  - nope\n---\nBody text.\n"
    document = load(write(tmp_path, "bad.md", text))
    assert kinds(document) == [("paragraph", "Body text.")]
    assert document.warnings == ["front matter is not valid YAML; ignored"]


# HTML


def test_html_blocks_title_and_dropped_chrome(tmp_path: Path) -> None:
    document = load(write(tmp_path, "notes.html", HTML))
    assert document.format == "html"
    assert document.title == "Field Notes"
    assert kinds(document) == [
        ("heading", "Birds of the Marsh"),
        ("paragraph", "Herons wade slowly at dawn."),
        ("paragraph", "Hello world"),
        ("paragraph", "<script>alert(1)</script>"),
        ("paragraph", "Bare text in a div"),
        ("paragraph", "Egret"),
        ("paragraph", "Bittern"),
        ("heading", "Sightings"),
        ("paragraph", "Date"),
        ("paragraph", "May 3"),
        ("paragraph", "Quiet is the marsh."),
    ]
    assert "\n\n".join(block.text for block in document.blocks) == document.source


def test_html_script_tag_dropped_but_escaped_script_kept(tmp_path: Path) -> None:
    page = (
        "<p>Before <script>alert(1)</script>after.</p>"
        "<p>Shown: &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    )
    document = load(write(tmp_path, "xss.htm", page))
    assert kinds(document) == [
        ("paragraph", "Before after."),
        ("paragraph", "Shown: <script>alert(1)</script>"),
    ]


def test_html_title_falls_back_to_h1_then_file_name(tmp_path: Path) -> None:
    with_h1 = load(
        write(tmp_path, "a.html", "<body><h1>Tide Tables</h1><p>High at noon.</p></body>")
    )
    assert with_h1.title == "Tide Tables"
    bare = load(write(tmp_path, "low_tide-times.html", "<p>Low at six.</p>"))
    assert bare.title == "low tide times"


def test_html_article_header_is_kept_and_br_pairs_split_paragraphs(tmp_path: Path) -> None:
    page = (
        "<body><header>Site</header><article><header><h1>Post</h1></header>"
        "<div>One line<br>same paragraph<br><br>Next paragraph</div></article></body>"
    )
    document = load(write(tmp_path, "post.html", page))
    assert kinds(document) == [
        ("heading", "Post"),
        ("paragraph", "One line same paragraph"),
        ("paragraph", "Next paragraph"),
    ]


def test_html_declared_charset_is_used(tmp_path: Path) -> None:
    page = '<meta charset="iso-8859-1"><p>Caf\u00e9 \u2013 open late.</p>'.encode("cp1252")
    document = load(write(tmp_path, "cafe.html", page))
    assert kinds(document) == [("paragraph", "Café – open late.")]
    assert document.warnings == []


# PDF


def test_pdf_paragraphs_headings_pages_and_title(tmp_path: Path) -> None:
    document = load(make_pdf(tmp_path / "report.pdf"))
    assert document.format == "pdf"
    assert document.title == "Annual Report 2024"
    assert document.metadata["pages"] == 2
    assert document.metadata["author"] == "Finance Team"
    assert [(block.kind, block.page, block.text[:30]) for block in document.blocks] == [
        ("heading", 1, "Budget Overview"),
        ("heading", 1, "1. Introduction"),
        ("paragraph", 1, "The committee reviewed the ann"),
        ("paragraph", 1, "Hiring grew slowly in the inte"),
        ("heading", 1, "Results"),
        ("paragraph", 1, "The committee reviewed the ann"),
        ("paragraph", 2, "The second page talks about th"),
    ]
    assert document.blocks[2].text == LONG_SENTENCE * 3 + "Costs were high."
    assert "\n\n".join(block.text for block in document.blocks) == document.source


def test_pdf_title_falls_back_to_file_name(tmp_path: Path) -> None:
    document = load(make_pdf(tmp_path / "budget_2024.pdf", title=None))
    assert document.title == "budget 2024"


def test_pdf_encrypted_with_empty_user_password_loads(tmp_path: Path) -> None:
    path = _encrypted_pdf(tmp_path / "locked.pdf", user_password="")
    assert kinds(load(path)) == [("paragraph", "Readable but not printable.")]


def test_pdf_encrypted_with_a_password_is_skipped(tmp_path: Path) -> None:
    path = _encrypted_pdf(tmp_path / "secret.pdf", user_password="hunter2")
    with pytest.raises(UnsupportedFile, match="^encrypted PDF$"):
        load(path)


def test_pdf_without_text_is_skipped(tmp_path: Path) -> None:
    drawing = canvas.Canvas(str(tmp_path / "scan.pdf"))
    drawing.rect(72, 72, 200, 200, fill=1)
    drawing.save()
    with pytest.raises(UnsupportedFile, match=r"^no extractable text \(scanned PDF\?\)$"):
        load(tmp_path / "scan.pdf")


def _encrypted_pdf(path: Path, user_password: str) -> Path:
    encryption = pdfencrypt.StandardEncryption(user_password, ownerPassword="owner", canPrint=0)
    drawing = canvas.Canvas(str(path), encrypt=encryption)
    drawing.drawString(72, 720, "Readable but not printable.")
    drawing.save()
    return path


# DOCX


def test_docx_headings_title_and_tables(tmp_path: Path) -> None:
    document = load(make_docx(tmp_path / "review.docx"))
    assert document.format == "docx"
    assert document.title == "Quarterly Review"
    assert [(block.kind, block.level, block.text) for block in document.blocks] == [
        ("heading", 1, "Quarterly Review"),
        ("heading", 1, "Overview"),
        ("paragraph", 1, "Sales rose in the third quarter."),
        ("paragraph", 1, "Returns fell."),
        ("heading", 2, "Numbers"),
        ("paragraph", 1, "Region: North, Sales: 12"),
        ("paragraph", 1, "That is all."),
    ]
    assert "\n\n".join(block.text for block in document.blocks) == document.source


def test_docx_table_rows_read_as_labels_and_values_or_cells(tmp_path: Path) -> None:
    word = docx.Document()
    budget = word.add_table(rows=3, cols=2)
    for (row, column), text in {
        (0, 0): "Item", (0, 1): "Cost per month",
        (1, 0): "Beans", (1, 1): "£180",
        (2, 0): "Rice", (2, 1): "£95",
    }.items():  # fmt: skip
        budget.cell(row, column).text = text
    word.add_paragraph("Between the tables.")
    unlabelled = word.add_table(rows=2, cols=2)
    for (row, column), text in {(0, 0): "x", (0, 1): "x", (1, 0): "a", (1, 1): "b"}.items():
        unlabelled.cell(row, column).text = text
    word.save(str(tmp_path / "budget.docx"))
    texts = [block.text for block in load(tmp_path / "budget.docx").blocks]
    assert texts == [
        "Item: Beans, Cost per month: £180",
        "Item: Rice, Cost per month: £95",
        "Between the tables.",
        "x",  # a header whose labels repeat is no header: cells as they are
        "a | b",
    ]


def test_docx_core_properties_title_wins(tmp_path: Path) -> None:
    document = load(make_docx(tmp_path / "review.docx", core_title="Q3 Review (final)"))
    assert document.title == "Q3 Review (final)"


# Files that are skipped, and why


def _zip_without_word_parts() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"", "^empty file$"),
        ("blank.md", b"  \n\t\n  \n", "^empty file$"),
        ("blank.html", b"\n\n   \n", "^empty file$"),
        (
            "image.txt",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
            "^binary content",
        ),
        ("controls.md", bytes([1, 2, 3, 4, 5, 6, 7, 8]) * 20 + b"text", "^binary content"),
        ("data.xyz", b"some data", r"^unsupported file type \.xyz$"),
        ("Makefile", b"all:\n\techo hi\n", r"^unsupported file type \(no extension\)$"),
        ("random.pdf", bytes(range(256)) * 8, "^cannot read PDF: "),
        ("truncated.pdf", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog", "^cannot read PDF: "),
        ("random.docx", bytes(range(256)) * 8, "^cannot read DOCX: "),
        ("plain.docx", _zip_without_word_parts(), "^cannot read DOCX: "),
        ("headings.md", b"# Only\n\n## Headings\n", "^no text found$"),
        ("scripts.html", b"<script>var a = 1;</script><nav>Menu</nav>", "^no text found$"),
    ],
)
def test_unsupported_files_raise_with_a_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(UnsupportedFile, match=reason):
        load(path)


def test_file_over_the_size_limit_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "big.md", b"x" * (3 * MB))

    def refuse_to_open(self: Path, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"{self} was opened although it is over the limit")

    monkeypatch.setattr(Path, "open", refuse_to_open)
    with pytest.raises(UnsupportedFile, match=r"^file is 3\.0 MB, over the 2\.0 MB limit$"):
        load(path, max_bytes=2 * MB)


def test_missing_file_is_reported_as_disappeared(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFile, match="^file disappeared during indexing$"):
        load(tmp_path / "gone.txt", tmp_path)


# Discovery and ids


def test_discover_files_skips_hidden_and_excluded_but_keeps_unsupported(tmp_path: Path) -> None:
    for name in [
        "b.txt",
        "a/z.md",
        "a/c.pdf",
        "notes.xyz",
        ".hidden.txt",
        ".git/config",
        "idx/x.txt",
    ]:
        write(tmp_path, name, "text")
    found = discover_files(tmp_path, exclude=[tmp_path / "idx"])
    assert [path.relative_to(tmp_path).as_posix() for path in found] == [
        "a/c.pdf",
        "a/z.md",
        "b.txt",
        "notes.xyz",
    ]


def test_doc_id_is_the_posix_path_relative_to_root(tmp_path: Path) -> None:
    path = write(tmp_path, "deep/er/notes.txt", "Some text.")
    assert load(path, tmp_path).doc_id == "deep/er/notes.txt"


@pytest.mark.parametrize(
    ("name", "text", "title"),
    [
        ("Super_Bowl_50.txt", "The game was played in 2016.\n", "Super Bowl 50"),
        ("ab12cd34ef56.txt", "Short opening.\n\nMore text follows here.\n", "Short opening."),
        ("IMG_20240101.txt", "A cat sat on the mat. It purred.\n", "A cat sat on the mat."),
        ("notes.txt", "Quarterly Results\n\nRevenue grew by a third.\n", "Quarterly Results"),
    ],
)
def test_text_title_from_a_title_line_a_worded_file_name_or_the_first_sentence(
    tmp_path: Path, name: str, text: str, title: str
) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    assert load(tmp_path / name, tmp_path).title == title


def test_markdown_with_inline_markup_is_loaded_in_little_memory_per_character(
    tmp_path: Path,
) -> None:
    """Each character of a block whose markup was stripped keeps its source offset: as a
    tuple of ints that took 36 bytes a character (a peak of 24 per character of this file,
    34 of resident memory on a larger one), so a 19 MB Markdown file outgrew the loader's
    memory limit; now 8 (a peak under 16)."""
    import tracemalloc

    words = "alpha **beta** gamma [delta](https://example.org/d) epsilon".split()
    paragraphs = [" ".join(words[(i + j) % len(words)] for j in range(40)) for i in range(5000)]
    path = tmp_path / "big.md"
    path.write_text("# Title\n\n" + ".\n\n".join(paragraphs) + ".\n", encoding="utf-8")
    tracemalloc.start()
    try:
        document = load_document(path, tmp_path, 10 * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(document.blocks) == 5001
    assert peak / path.stat().st_size < 16, peak / path.stat().st_size
