"""Shared fixtures: the real bundled model, loaded once, and an index of the seeds."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cache_helpers import (
    FIXTURE_CACHE_OPTION,
    built_index,
    cache_dir_at,
    fixture_cache,
    fresh_cache_dir,
)
from live_helpers import LIGHTHOUSE

from indexer.build import build_index
from indexer.embedding import Embedder, load_embedder
from indexer.retrieval import Searcher
from indexer.settings import DEFAULT_MODEL, Settings

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        FIXTURE_CACHE_OPTION,
        metavar="DIR",
        help="keep the model's ONNX export and the seed indexes in DIR and reuse them in "
        "later runs (make mutation runs the tests once per mutant)",
    )


@pytest.fixture(scope="session", autouse=True)
def export_cache(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """ONNX exports made by this run go to a folder of its own, never the user's cache."""
    kept = fixture_cache(request.config)
    if kept is None:
        yield from fresh_cache_dir(tmp_path_factory)
    else:
        yield from cache_dir_at(kept / "export")


@pytest.fixture(scope="session")
def embedder(export_cache: Path) -> Embedder:
    """The bundled all-MiniLM-L6-v2 on the default backend, loaded offline once for the run."""
    return load_embedder(DEFAULT_MODEL, Settings().backend)


@pytest.fixture(scope="session")
def torch_embedder() -> Embedder:
    """The bundled model on torch: the reference the ONNX backends are checked against."""
    return load_embedder(DEFAULT_MODEL, "torch")


@pytest.fixture(scope="session")
def seeds_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("seeds")
    for path in SEEDS.iterdir():
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="session")
def seed_index(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    embedder: Embedder,
    seeds_copy: Path,
) -> Path:
    """An index of the seed documents (do not modify it; build your own for write tests)."""
    return built_index(
        fixture_cache(request.config),
        "seed-index",
        tmp_path_factory.mktemp("index") / "idx",
        lambda index_dir: build_index(seeds_copy, Settings(index=index_dir), embedder=embedder),
    )


@pytest.fixture(scope="session")
def searcher(seed_index: Path, embedder: Embedder) -> Iterator[Searcher]:
    opened = Searcher.open(seed_index, embedder)
    yield opened
    opened.close()


@pytest.fixture
def make_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings pointing at a fresh index folder inside the test's tmp_path."""

    def make(**overrides: object) -> Settings:
        return Settings(index=tmp_path / "index").with_overrides(**overrides)

    return make


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A folder holding one short text, lighthouse.txt (for tests that change an index)."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "lighthouse.txt").write_text(LIGHTHOUSE, encoding="utf-8")
    return folder
