"""The index a long-running server answers from: it follows each newly published generation.

`paracite index` publishes a generation by replacing the index's CURRENT file (a new inode
every time), so one `stat` per question tells whether anything changed. A new generation is
opened on the first question after it is published; questions already running finish on the
searcher they started with, which is closed once the last of them is done. When the index
disappears or breaks, every question gets the domain error (the server's 503) until a valid
index is back.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from indexer.embedding import Embedder
from indexer.errors import IndexNotFound, ParaciteError
from indexer.retrieval import Searcher
from indexer.store import CURRENT, Manifest, require_generation

Opener = Callable[[Path, Embedder | None], Searcher]
# (inode, mtime, size) of CURRENT: changes whenever a generation is published
PointerStamp = tuple[int, int, int]


@dataclass(slots=True)
class _Opened:
    searcher: Searcher
    stamp: PointerStamp
    generation: str
    users: int = 0
    retired: bool = False


class LiveIndex:
    """Hands out the searcher of the live generation, re-opening it after each publish."""

    def __init__(self, index_dir: Path, opener: Opener, embedder: Embedder | None = None) -> None:
        self.index_dir = index_dir
        self._opener = opener
        self._embedder = embedder
        self._lock = threading.Lock()
        self._opened: _Opened | None = None

    @contextlib.contextmanager
    def searcher(self) -> Iterator[Searcher]:
        """The searcher of the live generation, kept open while the caller uses it."""
        opened = self._acquire()
        try:
            yield opened.searcher
        finally:
            self._release(opened)

    def current(self) -> Searcher:
        """The live searcher without holding it (for quick reads such as stats)."""
        opened = self._acquire()
        self._release(opened)
        return opened.searcher

    def close(self) -> None:
        with self._lock:
            if self._opened is not None:
                self._retire(self._opened)
                self._opened = None

    # -- internals ---------------------------------------------------------------------------

    def _acquire(self) -> _Opened:
        with self._lock:
            try:
                stamp = self._stamp()
                if self._opened is None or self._opened.stamp != stamp:
                    self._switch(stamp)
            except ParaciteError:
                # A vanished or broken index is never answered from an older generation.
                if self._opened is not None:
                    self._retire(self._opened)
                    self._opened = None
                raise
            assert self._opened is not None
            self._opened.users += 1
            return self._opened

    def _release(self, opened: _Opened) -> None:
        with self._lock:
            opened.users -= 1
            if opened.retired and opened.users == 0:
                opened.searcher.close()

    def _stamp(self) -> PointerStamp:
        try:
            info = os.stat(self.index_dir / CURRENT)
        except FileNotFoundError:
            raise IndexNotFound(f"no index at {self.index_dir} (it was removed)") from None
        return info.st_ino, info.st_mtime_ns, info.st_size

    def _switch(self, stamp: PointerStamp) -> None:
        generation = require_generation(self.index_dir)
        if self._opened is not None and self._opened.generation == generation.name:
            self._opened.stamp = stamp  # CURRENT rewritten with the same generation
            return
        manifest = Manifest.read(generation)
        embedder = self._reusable_embedder(manifest)
        searcher = self._opener(self.index_dir, embedder)
        self._embedder = searcher.embedder
        if self._opened is not None:
            self._retire(self._opened)
        self._opened = _Opened(searcher, stamp, generation.name)

    def _reusable_embedder(self, manifest: Manifest) -> Embedder | None:
        """The loaded model, when the new generation was built with the same one."""
        embedder = self._embedder
        if embedder is not None and (embedder.model_name, embedder.backend) == (
            manifest.model,
            manifest.backend,
        ):
            return embedder
        return None

    def _retire(self, opened: _Opened) -> None:
        opened.retired = True
        if opened.users == 0:
            opened.searcher.close()
