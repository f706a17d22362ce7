"""The export cache the tests use, and the fixture cache a mutation run keeps between runs.

By default every run exports the model into a fresh folder, never the user's
~/.cache/paracite, and builds its indexes anew. `--fixture-cache DIR` (set by `make
mutation`, which runs the tests once per mutant) keeps the model's export and the built
indexes in DIR instead and gives each run a copy: neither touches the mutated modules.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIXTURE_CACHE_OPTION = "--fixture-cache"


def fresh_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point PARACITE_CACHE_DIR at a new empty folder for as long as the caller's scope lasts."""
    yield from cache_dir_at(tmp_path_factory.mktemp("paracite-cache"))


def cache_dir_at(folder: Path) -> Iterator[Path]:
    """Point PARACITE_CACHE_DIR at `folder` for as long as the caller's scope lasts."""
    folder.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PARACITE_CACHE_DIR", str(folder))
        yield folder


def fixture_cache(config: pytest.Config) -> Path | None:
    """The folder given with --fixture-cache (made if missing), or None."""
    option = config.getoption(FIXTURE_CACHE_OPTION)
    if option is None:
        return None
    folder = Path(option).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def built_index(kept: Path | None, name: str, target: Path, build: Callable[[Path], None]) -> Path:
    """Build an index at `target`, or copy there the one kept as `name` under `kept`.

    The kept index is built on first use into a folder of its own and renamed into place,
    so runs side by side never see half of one.
    """
    if kept is None:
        build(target)
        return target
    stored = kept / name
    if not stored.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=kept))
        build(staging / "index")
        try:
            os.rename(staging / "index", stored)
        except OSError:
            pass  # another run kept its build first: the same documents, the same index
        shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(stored, target)
    return target
