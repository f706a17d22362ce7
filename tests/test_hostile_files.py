"""Hostile files and names: nothing one file does may stop a run, and each gets a clear reason.

Odd names (bytes that are not UTF-8, newlines, "%", "#", "?") get safe, stable doc ids that
the pages and the API serve; links out of the folder, loops and unreadable folders are
reported; decompression bombs, deep HTML, slow, memory-hungry and crashing files are
skipped with their reason while the rest of the folder is indexed.
"""

from __future__ import annotations

import functools
import os
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from server_helpers import LiveServer

import indexer.build as build
import indexer.loaders.discovery as discovery
from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.errors import ParaciteError
from indexer.loaders import find_files
from indexer.loaders.discovery import safe_id
from indexer.loaders.docx import MAX_PARAGRAPHS, MAX_UNPACKED_BYTES, MAX_XML_PART_BYTES
from indexer.loaders.html import MAX_DEPTH, nesting_depth
from indexer.loaders.isolated import IsolatedReader
from indexer.models import IndexReport
from indexer.retrieval import Searcher
from indexer.settings import Settings
from server.app import create_app

GOOD_TEXT = "Lighthouses guide ships along rocky coasts at night.\n"


def write(folder: Path, name: str | bytes, text: str = GOOD_TEXT) -> Path:
    path = folder / os.fsdecode(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def outcomes(report: IndexReport) -> dict[str, tuple[str, str]]:
    return {file.path: (file.status, file.reason) for file in report.files}


# -- doc ids from file names -------------------------------------------------------------------


def test_safe_ids_escape_bad_bytes_controls_and_percent_only() -> None:
    assert safe_id("notes/plain name.txt") == "notes/plain name.txt"
    assert safe_id("naïve café #1?.md") == "naïve café #1?.md"
    assert safe_id(os.fsdecode(b"bad\xff.txt")) == "bad%FF.txt"
    assert safe_id("a\nb\tc\x7f.txt") == "a%0Ab%09c%7F.txt"
    assert safe_id("line\u2028sep.txt") == "line%E2%80%A8sep.txt"
    # "%" is escaped too, so a name that looks like an escape keeps its own id.
    assert safe_id("100%.txt") == "100%25.txt"
    assert safe_id("a%0Ab.txt") == "a%250Ab.txt"
    assert safe_id("a%0Ab.txt") != safe_id("a\nb.txt")


def test_a_name_that_is_not_utf8_is_indexed_under_a_safe_id(
    tmp_path: Path, embedder: Embedder, make_settings
) -> None:
    docs = tmp_path / "docs"
    write(docs, "good.txt")
    write(docs, b"bad\xff.txt", "Title\n\nThe lighthouse keeper wrote in a logbook.\n")
    write(docs, b"sub\xfe/inner.txt", "Keepers trimmed the lamp wicks every evening.\n")
    write(docs, "line\nbreak.txt", "A newline in a file name.\n")

    report = build_index(docs, make_settings(), embedder=embedder)

    by_path = outcomes(report)
    for doc_id in ("good.txt", "bad%FF.txt", "sub%FE/inner.txt", "line%0Abreak.txt"):
        assert by_path[doc_id][0] == "added", by_path
    again = build_index(docs, make_settings(), embedder=embedder)
    assert again.up_to_date, "the ids are the same on every run"


def test_a_lone_surrogate_in_front_matter_does_not_stop_the_run(
    tmp_path: Path, embedder: Embedder, make_settings
) -> None:
    docs = tmp_path / "docs"
    write(docs, "good.txt")
    write(docs, "odd.md", '---\ntitle: "Broken \\ud800 title"\n---\n\nThe text itself is fine.\n')

    report = build_index(docs, make_settings(), embedder=embedder)

    assert outcomes(report)["odd.md"][0] == "added"
    searcher = Searcher.open(make_settings().index, embedder)
    try:
        assert searcher.document("odd.md").info.title == "Broken \ufffd title"
    finally:
        searcher.close()


ODD_NAMES = [
    "a\nb.txt",
    "with space.txt",
    "100%.txt",
    "c#sharp.txt",
    "what?.txt",
    "naïve café.txt",
    "sub dir/x%41#?.txt",
]


@pytest.fixture(scope="module")
def odd_server(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[httpx.Client]:
    """A real server over documents with odd names (TestClient decodes "%25" twice)."""
    docs = tmp_path_factory.mktemp("odd")
    for number, name in enumerate(ODD_NAMES):
        write(docs, name, f"Document {number} is about marsupials.\n\nIt has a second paragraph.\n")
    write(docs, b"bad\xff.txt", "Quokkas live on Rottnest Island.\n")
    index = tmp_path_factory.mktemp("odd-index") / "idx"
    build_index(docs, Settings(index=index), embedder=embedder)
    searcher = Searcher.open(index, embedder)
    try:
        with LiveServer(create_app(Settings(index=index), searcher)) as server:
            with httpx.Client(base_url=server.url) as client:
                yield client
    finally:
        searcher.close()


def test_documents_with_odd_names_are_served_by_pages_and_api(odd_server: httpx.Client) -> None:
    documents = odd_server.get("/api/documents").json()["documents"]
    assert sorted(d["doc_id"] for d in documents) == sorted(
        [safe_id(name) for name in ODD_NAMES] + ["bad%FF.txt"]
    )
    for document in documents:
        doc_id = document["doc_id"]
        data = odd_server.get(f"/api/documents/{quote(doc_id)}")
        assert data.status_code == 200, doc_id
        assert data.json()["doc_id"] == doc_id
        page = odd_server.get(document["url"])
        assert page.status_code == 200, (doc_id, document["url"])
        for block in data.json()["blocks"]:
            if block["paragraph"] is not None:
                url, _, anchor = block["url"].partition("#")
                assert odd_server.get(url).status_code == 200
                assert anchor == f"p{block['paragraph']}"


# -- links and folders -------------------------------------------------------------------------


def test_links_out_of_the_folder_are_skipped_unless_allowed(
    tmp_path: Path, embedder: Embedder, make_settings
) -> None:
    secret = write(tmp_path / "private", "secret.txt", "The vault code is 4711.\n")
    docs = tmp_path / "docs"
    write(docs, "good.txt")
    (docs / "secret.txt").symlink_to(secret)
    (docs / "private").symlink_to(secret.parent)
    (docs / "status.txt").symlink_to("/proc/self/status")

    report = build_index(docs, make_settings(), embedder=embedder)

    by_path = outcomes(report)
    assert by_path["good.txt"][0] == "added"
    for name in ("secret.txt", "private/", "status.txt"):
        status, reason = by_path[name]
        assert status == "skipped" and "outside the indexed folder" in reason, name
        assert "PARACITE_FOLLOW_EXTERNAL_LINKS" in reason
    assert not any(path.startswith("private/") and path != "private/" for path in by_path)

    allowed = build_index(docs, make_settings(follow_external_links=True), embedder=embedder)
    by_path = outcomes(allowed)
    assert by_path["secret.txt"][0] == "added"
    assert by_path["private/secret.txt"][0] == "added"


def test_links_inside_the_folder_are_followed_once_and_loops_reported(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, "a/one.txt")
    write(docs, "z/two.txt")
    (docs / "alias.txt").symlink_to("a/one.txt")
    (docs / "b").symlink_to("z")  # the folder z is reached directly, so b is left out
    (docs / "a" / "up").symlink_to("..")  # a loop
    (docs / "c").symlink_to("a")
    (docs / "c2").symlink_to("c")
    (docs / "dangling.txt").symlink_to("nowhere.txt")
    (docs / "self.txt").symlink_to("self.txt")
    os.mkfifo(docs / "pipe.txt")

    found = find_files(docs)

    assert [path.relative_to(docs).as_posix() for path in found.files] == [
        "a/one.txt",
        "alias.txt",
        "z/two.txt",
    ]
    reasons = {skipped.path_id: skipped.reason for skipped in found.skipped}
    assert reasons["a/up/"].startswith("link loop")
    assert reasons["b/"] == "folder already indexed as z/"
    assert reasons["c/"] == "folder already indexed as a/"
    assert reasons["c2/"] == "folder already indexed as a/"
    assert reasons["dangling.txt"].startswith("broken link")
    assert reasons["self.txt"].startswith("link loop")
    assert reasons["pipe.txt"] == "not a regular file"


def test_a_folder_that_cannot_be_read_is_reported(
    tmp_path: Path, embedder: Embedder, make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    write(docs, "good.txt")
    write(docs, "locked/inside.txt")
    list_directory = discovery._list_directory

    def refuse_locked(directory: Path) -> list[os.DirEntry[str]]:
        if directory.name == "locked":  # tests run as root, so chmod 000 would not stop them
            raise PermissionError(13, "Permission denied", str(directory))
        return list_directory(directory)

    monkeypatch.setattr(discovery, "_list_directory", refuse_locked)
    report = build_index(docs, make_settings(), embedder=embedder)

    by_path = outcomes(report)
    assert by_path["good.txt"][0] == "added"
    assert by_path["locked/"] == ("skipped", "folder cannot be read: Permission denied")


# -- bombs and slow files ----------------------------------------------------------------------

DOCX_SKELETON = {
    "[Content_Types].xml": (
        '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-'
        'package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.wordprocessingml.document.main+xml"/></Types>'
    ),
    "_rels/.rels": (
        '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
        '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
        'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
        "</Relationships>"
    ),
}
DOCUMENT_START = (
    '<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
    'wordprocessingml/2006/main"><w:body>'
)
DOCUMENT_END = "</w:body></w:document>"


def write_docx(path: Path, body: str, extra: dict[str, int] | None = None) -> None:
    """A minimal DOCX; `extra` adds parts of that many bytes of highly compressible filler."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as package:
        for name, text in DOCX_SKELETON.items():
            package.writestr(name, text)
        package.writestr("word/document.xml", DOCUMENT_START + body + DOCUMENT_END)
        for name, size in (extra or {}).items():
            with package.open(name, "w", force_zip64=True) as part:
                block = b" " * (1 << 20)
                for _ in range(size // len(block)):
                    part.write(block)
                part.write(b" " * (size % len(block)))


def test_decompression_bombs_and_deep_html_are_skipped_with_reasons(
    tmp_path: Path, embedder: Embedder, make_settings
) -> None:
    docs = tmp_path / "docs"
    write(docs, "good.txt")
    paragraph = "<w:p><w:r><w:t>Readable text of a small document.</w:t></w:r></w:p>"
    write_docx(docs / "fine.docx", paragraph)
    write_docx(docs / "bomb.docx", paragraph, {"word/media/filler.bin": MAX_UNPACKED_BYTES + 1})
    write_docx(docs / "big-xml.docx", paragraph, {"customXml/item1.xml": MAX_XML_PART_BYTES + 1})
    write_docx(docs / "paragraphs.docx", "<w:p/>" * (MAX_PARAGRAPHS + 1))
    (docs / "deep.html").write_text(
        "<html><body>" + "<div>" * 200_000 + "<p>Deep text.</p></body></html>"
    )
    (docs / "shallow.html").write_text(
        "<html><body>" + "<div>" * (MAX_DEPTH - 10) + "<p>Text nested deep but not too deep.</p>"
    )

    report = build_index(docs, make_settings(), embedder=embedder)

    by_path = outcomes(report)
    for name in ("good.txt", "fine.docx", "shallow.html"):
        assert by_path[name][0] == "added", by_path[name]
    assert by_path["bomb.docx"][0] == "skipped"
    assert by_path["bomb.docx"][1].startswith("too large when decompressed")
    assert by_path["big-xml.docx"][0] == "skipped"
    assert "customXml/item1.xml" in by_path["big-xml.docx"][1]
    assert by_path["paragraphs.docx"][0] == "skipped"
    assert by_path["paragraphs.docx"][1] == (
        f"DOCX has over {MAX_PARAGRAPHS:,} paragraphs, too many to read"
    )
    assert by_path["deep.html"] == (
        "skipped",
        f"HTML elements nested over {MAX_DEPTH:,} levels deep",
    )


@pytest.mark.parametrize(
    ("html", "depth"),
    [
        ("<html><body><div><p>a<p>b<ul><li>x<li>y</ul></div></body></html>", 0),
        ("<div><svg><path/><path/><g><path/></g></svg></div>", 0),
        ("<div><script>'<div><div><div>'</script><!-- <div><div> --></div>", 0),
        ("<div><span><b>unclosed inline</div><div>", 1),
        ("<div>" * 5 + "<div/>" * 5, 10),
        ("<section>" * 3 + "</section>" * 3 + "<a" * 50, 0),
    ],
)
def test_html_nesting_is_estimated_as_a_parser_would_nest(html: str, depth: int) -> None:
    assert nesting_depth(html, MAX_DEPTH) == depth


def test_a_reader_that_cannot_start_stops_the_run_with_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path, "a.txt")
    command = [sys.executable, "-c", "import sys; sys.exit('no parsers here')"]
    with IsolatedReader(tmp_path, 1 << 20, 5, command=command) as reader:
        with pytest.raises(ParaciteError, match="could not start: no parsers here"):
            reader.load(tmp_path / "a.txt")


def fake_worker(behaviour: str) -> list[str]:
    """The real worker, except that files named `hostile.txt` get `behaviour` instead."""
    script = f"""
import os, signal, time
import indexer.loaders.worker as worker
real = worker.load_document
def load_document(path, root, max_bytes):
    if path.name == "hostile.txt":
        {behaviour}
    return real(path, root, max_bytes)
worker.load_document = load_document
worker.main()
"""
    return [sys.executable, "-P", "-c", script]


@pytest.mark.parametrize(
    ("behaviour", "memory_limit", "reason"),
    [
        ("time.sleep(3600)", None, "took longer than 2 s to read (PARACITE_MAX_FILE_SECONDS)"),
        (
            "bytearray(1024 * 1024 * 1024)",
            512 * 1024 * 1024,
            "too large when decompressed (needs over 512 MB of memory to read)",
        ),
        (
            "os.kill(os.getpid(), signal.SIGSEGV)",
            None,
            "the reader process crashed on this file (signal 11)",
        ),
    ],
    ids=["slow", "memory", "crash"],
)
def test_a_file_that_hangs_exhausts_memory_or_crashes_the_reader_is_skipped(
    tmp_path: Path,
    embedder: Embedder,
    make_settings,
    monkeypatch: pytest.MonkeyPatch,
    behaviour: str,
    memory_limit: int | None,
    reason: str,
) -> None:
    docs = tmp_path / "docs"
    write(docs, "a.txt")
    write(docs, "hostile.txt")
    write(docs, "z.txt", "Read after the worker was replaced.\n")
    options: dict[str, object] = {"command": fake_worker(behaviour)}
    if memory_limit is not None:
        options["memory_limit"] = memory_limit
    monkeypatch.setattr(build, "IsolatedReader", functools.partial(IsolatedReader, **options))

    report = build_index(docs, make_settings(max_file_seconds=2), embedder=embedder)

    by_path = outcomes(report)
    assert by_path["hostile.txt"] == ("skipped", reason)
    assert by_path["a.txt"][0] == "added"
    assert by_path["z.txt"][0] == "added"
