"""The export cache the tests use: a fresh folder, never the user's ~/.cache/paracite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


def fresh_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point PARACITE_CACHE_DIR at a new empty folder for as long as the caller's scope lasts."""
    folder = tmp_path_factory.mktemp("paracite-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PARACITE_CACHE_DIR", str(folder))
        yield folder
