"""Keep a folder indexed: re-index it after each burst of file changes (watch mode)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from watchfiles import Change, watch

from indexer.build import build_index
from indexer.embedding import Embedder, load_embedder
from indexer.errors import ParaciteError
from indexer.models import IndexReport
from indexer.settings import Settings

# Changes closer together than this are one burst, indexed by one run.
DEBOUNCE_MS = 1000


class FolderWatch:
    """Re-indexes `root` into `settings.index` whenever files under it change.

    Hidden files and folders are ignored, as indexing ignores them, and so is the index
    folder itself when it lies inside `root` (its writes would otherwise trigger runs for
    ever). Each run is incremental; a run that fails (another indexing run holds the index,
    say) is reported and the watch goes on.
    """

    def __init__(
        self,
        root: Path,
        settings: Settings,
        on_report: Callable[[IndexReport], None],
        on_error: Callable[[ParaciteError], None],
        embedder: Embedder | None = None,
        debounce_ms: int = DEBOUNCE_MS,
    ) -> None:
        self.root = root.resolve()
        self.settings = settings
        self._index_dir = settings.index.resolve()
        self._on_report = on_report
        self._on_error = on_error
        self._embedder = embedder
        self._debounce_ms = debounce_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Watch and re-index until `stop()` is called (blocks)."""
        for _ in watch(
            self.root,
            watch_filter=self._matters,
            debounce=self._debounce_ms,
            stop_event=self._stop,
        ):
            self.index_once()

    def run_until_interrupted(self) -> None:
        """Watch and re-index in this (the main) thread until Ctrl-C, then KeyboardInterrupt.

        Ctrl-C also sets the stop event the watch checks between its steps. A watch left
        running after Ctrl-C was seen about once in twenty test runs, its KeyboardInterrupt
        lost somewhere between the watch's Rust code and the Python it calls back; with the
        event set, the watch ends whatever became of the exception.
        """
        interrupted = threading.Event()

        def on_interrupt(number: int, frame: FrameType | None) -> None:
            interrupted.set()
            self._stop.set()
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_interrupt)
        try:
            self.run()
        finally:
            signal.signal(signal.SIGINT, previous)
        if interrupted.is_set():
            raise KeyboardInterrupt

    def index_once(self) -> IndexReport | None:
        """One incremental run, reported through the callbacks."""
        try:
            if self._embedder is None:  # loaded once, for every run of the watch
                self._embedder = load_embedder(
                    self.settings.model, self.settings.backend, cache_dir=self.settings.cache_dir
                )
            report = build_index(self.root, self.settings, embedder=self._embedder)
        except ParaciteError as error:
            self._on_error(error)
            return None
        self._on_report(report)
        return report

    def start(self) -> FolderWatch:
        """Run the watch in a background thread."""
        self._thread = threading.Thread(target=self.run, name="paracite-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _matters(self, change: Change, path: str) -> bool:
        candidate = Path(path)
        if candidate == self._index_dir or self._index_dir in candidate.parents:
            return False
        try:
            relative = candidate.relative_to(self.root)
        except ValueError:
            return False
        return not any(part.startswith(".") for part in relative.parts)


def describe_run(report: IndexReport) -> str:
    """One line for a watch-mode log: what the run added, changed, removed and skipped."""
    if report.up_to_date:
        return "index is up to date"
    counts = [
        f"{report.count(status)} {label}"
        for status, label in (
            ("added", "added"),
            ("updated", "changed"),
            ("removed", "removed"),
            ("skipped", "skipped"),
        )
    ]
    return f"re-indexed: {', '.join(counts)} ({report.seconds:.1f} s)"
