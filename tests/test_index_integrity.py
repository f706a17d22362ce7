"""Broken indexes: `info` and `serve` notice them in one line, `index` repairs them."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.errors import IndexBusy, IndexCorrupt
from indexer.lexical import PARAMS, VOCABULARY
from indexer.retrieval import Searcher
from indexer.settings import Settings
from indexer.store import (
    CURRENT,
    LEXICAL,
    MANIFEST,
    META,
    PASSAGE_VECTORS,
    SENTENCE_LEXICAL,
    SENTENCE_VECTORS,
    check_index,
    current_generation,
    live_segments,
    writer_lock,
)
from server.cli import main

QUESTION = "Why does Kim Jong Un distrust the United States?"


@pytest.fixture(scope="module")
def pristine(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, seeds_copy: Path
) -> Path:
    """An index of the seeds, built once; tests damage copies of it."""
    index_dir = tmp_path_factory.mktemp("pristine") / "idx"
    build_index(seeds_copy, Settings(index=index_dir), embedder=embedder)
    return index_dir


@pytest.fixture
def index_copy(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "idx"
    shutil.copytree(pristine, copy)
    return copy


def _live(index_dir: Path) -> Path:
    generation = current_generation(index_dir)
    assert generation is not None
    return generation


def _segment(index_dir: Path) -> Path:
    (segment,) = live_segments(index_dir)
    return segment


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage\xff" * 1000)


# Each breaks the live generation of an index in one way.
DAMAGE: dict[str, Callable[[Path], None]] = {
    "meta-missing": lambda idx: (_segment(idx) / META).unlink(),
    "meta-garbage": lambda idx: _garbage(_segment(idx) / META),
    "passage-vectors-missing": lambda idx: (_segment(idx) / PASSAGE_VECTORS).unlink(),
    "passage-vectors-truncated": lambda idx: _truncate(_segment(idx) / PASSAGE_VECTORS),
    "sentence-vectors-garbage": lambda idx: _garbage(_segment(idx) / SENTENCE_VECTORS),
    "lexical-missing": lambda idx: shutil.rmtree(_segment(idx) / LEXICAL),
    "sentence-lexical-file-missing": lambda idx: (
        _segment(idx) / SENTENCE_LEXICAL / VOCABULARY
    ).unlink(),
    "lexical-params-garbage": lambda idx: _garbage(_segment(idx) / LEXICAL / PARAMS),
    "segment-missing": lambda idx: shutil.rmtree(_segment(idx)),
    "manifest-garbage": lambda idx: _garbage(_live(idx) / MANIFEST),
}
# Breaks of the CURRENT pointer itself (no generation can be found from it).
BAD_POINTER: dict[str, Callable[[Path], None]] = {
    "current-not-utf8": lambda idx: (idx / CURRENT).write_bytes(b"gen-\xff\xfe\n"),
    "current-empty": lambda idx: (idx / CURRENT).write_text(""),
    "current-garbage": lambda idx: _garbage(idx / CURRENT),
    "generation-missing": lambda idx: shutil.rmtree(_live(idx)),
}


def _info(index_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["info", "--index", str(index_dir)])
    return result.exit_code, result.stderr.strip()


def test_info_passes_on_a_healthy_index(index_copy: Path) -> None:
    code, errors = _info(index_copy)
    assert (code, errors) == (0, "")


@pytest.mark.parametrize("damage", [*DAMAGE, *BAD_POINTER])
def test_info_fails_in_one_line_on_a_broken_index(index_copy: Path, damage: str) -> None:
    {**DAMAGE, **BAD_POINTER}[damage](index_copy)
    code, errors = _info(index_copy)
    assert code == 1
    assert len(errors.splitlines()) == 1, errors
    assert errors.startswith("error:") and "--rebuild" in errors


def test_current_that_is_not_utf8_is_index_corrupt(index_copy: Path) -> None:
    BAD_POINTER["current-not-utf8"](index_copy)
    with pytest.raises(IndexCorrupt, match="--rebuild"):
        current_generation(index_copy)


def test_a_missing_lexical_folder_is_an_error_not_a_lost_signal(
    index_copy: Path, embedder: Embedder
) -> None:
    DAMAGE["lexical-missing"](index_copy)
    with pytest.raises(IndexCorrupt, match=f"{LEXICAL} is missing"):
        Searcher.open(index_copy, embedder)


def test_an_empty_collection_has_no_lexical_index_and_is_fine(
    tmp_path: Path, embedder: Embedder
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    settings = Settings(index=tmp_path / "idx")
    build_index(empty, settings, embedder=embedder)
    assert live_segments(settings.index) == []
    assert check_index(settings.index).passages == 0
    searcher = Searcher.open(settings.index, embedder)
    try:
        assert searcher.ask(QUESTION).hits == []
        searcher.check()
    finally:
        searcher.close()
    again = build_index(empty, settings, embedder=embedder)
    assert again.up_to_date and not again.repaired


def _assert_works(index_dir: Path, embedder: Embedder) -> None:
    check_index(index_dir)
    searcher = Searcher.open(index_dir, embedder)
    try:
        assert searcher.ask(QUESTION).answer is not None
    finally:
        searcher.close()


@pytest.mark.parametrize("damage", [*DAMAGE, *BAD_POINTER])
def test_rebuild_repairs_any_broken_index(
    index_copy: Path, seeds_copy: Path, embedder: Embedder, damage: str
) -> None:
    {**DAMAGE, **BAD_POINTER}[damage](index_copy)
    report = build_index(seeds_copy, Settings(index=index_copy), rebuild=True, embedder=embedder)
    assert report.count("added") == 2
    _assert_works(index_copy, embedder)


def test_rebuild_of_a_broken_index_still_takes_the_writer_lock(
    index_copy: Path, seeds_copy: Path, embedder: Embedder
) -> None:
    BAD_POINTER["current-garbage"](index_copy)
    with writer_lock(index_copy), pytest.raises(IndexBusy):
        build_index(seeds_copy, Settings(index=index_copy), rebuild=True, embedder=embedder)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_plain_index_run_repairs_damaged_files_instead_of_calling_them_up_to_date(
    index_copy: Path, seeds_copy: Path, embedder: Embedder, damage: str
) -> None:
    DAMAGE[damage](index_copy)
    report = build_index(seeds_copy, Settings(index=index_copy), embedder=embedder)
    assert not report.up_to_date
    assert report.repaired and "--rebuild" not in report.repaired
    _assert_works(index_copy, embedder)
    assert build_index(seeds_copy, Settings(index=index_copy), embedder=embedder).up_to_date


def test_a_plain_index_run_over_a_broken_pointer_fails_in_one_line(
    index_copy: Path, seeds_copy: Path
) -> None:
    BAD_POINTER["current-not-utf8"](index_copy)
    result = CliRunner().invoke(main, ["index", str(seeds_copy), "--index", str(index_copy)])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--rebuild" in result.stderr


@pytest.mark.parametrize("damage", ["passage-vectors-truncated", "lexical-params-garbage"])
def test_serve_on_a_broken_index_prints_one_line(index_copy: Path, damage: str) -> None:
    DAMAGE[damage](index_copy)
    command = "from server.cli import main; main()"
    # The port is taken, so that a server that failed to notice would stop rather than serve.
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "-c", command, "serve", "--index", str(index_copy), "--port", port],
            capture_output=True,
            text=True,
            timeout=300,
        )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert "--rebuild" in output
