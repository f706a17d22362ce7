"""The `paracite` command as a user runs it: output format, and one-line errors with status 1."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from server_helpers import SEED_QUESTION

from indexer.models import NO_ANSWER_MESSAGE
from indexer.retrieval import Searcher
from indexer.store import current_generation, writer_lock

pytest_plugins = ["server_helpers"]

UNRELATED_QUESTION = "What is the boiling point of liquid nitrogen in kelvin?"


def paracite(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh process, wide enough that rich does not wrap a line."""
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
        timeout=600,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def index_copy(seed_index: Path, tmp_path: Path) -> Path:
    """A copy of the seed index that a test may change."""
    copy = tmp_path / "index"
    shutil.copytree(seed_index, copy, ignore=shutil.ignore_patterns("lock"))
    return copy


def passage_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.match(r"^\[\d+\] ", line)]


def test_ask_prints_the_answer_its_citation_and_the_passages(
    seed_index: Path, searcher: Searcher
) -> None:
    result = paracite("ask", SEED_QUESTION, "--index", str(seed_index), "-k", "3")
    assert result.returncode == 0, result.stderr
    expected = searcher.ask(SEED_QUESTION, 3)
    assert expected.answer is not None
    lines = result.stdout.splitlines()
    answer = expected.answer
    assert lines[0] == f"{answer.text} [{answer.passage}]"
    assert lines[1] == f"— {answer.title}, ¶{answer.paragraph} · {answer.confidence:.0%} sure"
    headings = passage_lines(result.stdout)
    assert len(headings) == 3
    for line, hit in zip(headings, expected.hits, strict=True):
        p = hit.passage
        section = f" ({p.section})" if p.section else ""
        assert line.startswith(f"[{hit.rank}] {p.title} — ¶{p.paragraph}{section} "), line
        assert f"{p.doc_id} · score {hit.score:.3f}" in line
    assert re.fullmatch(r"\d+\.\d ms", lines[-1])


def test_ask_says_when_nothing_answers_and_still_lists_passages(seed_index: Path) -> None:
    result = paracite("ask", UNRELATED_QUESTION, "--index", str(seed_index), "-k", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == NO_ANSWER_MESSAGE
    assert [line[:3] for line in passage_lines(result.stdout)] == ["[1]", "[2]"]


def test_ask_json_is_the_api_shape(seed_index: Path, searcher: Searcher) -> None:
    result = paracite("ask", SEED_QUESTION, "--index", str(seed_index), "--json", "-k", "2")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    expected = searcher.ask(SEED_QUESTION, 2).to_dict()
    assert set(data) == set(expected)
    assert data["answer"]["text"] == expected["answer"]["text"]
    assert [p["paragraph"] for p in data["passages"]] == [
        p["paragraph"] for p in expected["passages"]
    ]


def test_index_with_another_model_is_refused_in_one_line(
    index_copy: Path, seeds_copy: Path
) -> None:
    before = current_generation(index_copy)
    result = paracite("index", str(seeds_copy), "--index", str(index_copy), "--model", "x/other")
    assert_one_line_error(result, "'x/other'", "--rebuild")
    assert current_generation(index_copy) == before


def test_index_with_another_backend_is_refused_in_one_line(
    index_copy: Path, seeds_copy: Path
) -> None:
    manifest = json.loads((current_generation(index_copy) / "manifest.json").read_text())  # type: ignore[operator]
    other = "torch" if manifest["backend"] != "torch" else "onnx"
    before = current_generation(index_copy)
    result = paracite("index", str(seeds_copy), "--index", str(index_copy), "--backend", other)
    assert_one_line_error(result, f"({manifest['backend']})", f"({other})", "--rebuild")
    assert current_generation(index_copy) == before


def test_ask_on_an_index_of_another_format_is_refused_in_one_line(index_copy: Path) -> None:
    manifest_path = current_generation(index_copy) / "manifest.json"  # type: ignore[operator]
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "format_version": 99}))
    result = paracite("ask", SEED_QUESTION, "--index", str(index_copy))
    assert_one_line_error(result, "format version 99", "rebuild")
    assert result.stdout == ""


def test_indexing_a_busy_index_is_refused_in_one_line_and_questions_still_work(
    index_copy: Path, seeds_copy: Path
) -> None:
    with writer_lock(index_copy.resolve()):
        result = paracite("index", str(seeds_copy), "--index", str(index_copy))
        assert_one_line_error(result, "another indexing run", "try again")
        # Readers never wait for the writer.
        asked = paracite("search", "Acheson Line", "--index", str(index_copy), "-k", "1")
        assert asked.returncode == 0, asked.stderr
        assert len(passage_lines(asked.stdout)) == 1


def test_an_invalid_setting_is_named_in_one_line_per_setting(seed_index: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "ask", SEED_QUESTION, "--index", str(seed_index)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400", "PARACITE_READER": "sometimes"},
        timeout=600,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: PARACITE_READER='sometimes': ")
    assert "'off', 'auto' or 'on'" in line
