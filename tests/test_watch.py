"""Watch mode: a folder kept indexed as its files change, and `paracite serve --watch`."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from live_helpers import ORCHARD
from watchfiles import Change

from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.errors import ParaciteError
from indexer.models import IndexReport
from indexer.settings import Settings
from indexer.watch import FolderWatch, describe_run

# Deadlines for hangs, not for speed: a run normally lands within seconds.
DEADLINE_S = 120


class Runs:
    """What a watch reported, in order."""

    def __init__(self) -> None:
        self.reports: queue.Queue[IndexReport] = queue.Queue()
        self.errors: list[ParaciteError] = []

    def next(self) -> IndexReport:
        return self.reports.get(timeout=DEADLINE_S)

    def after(self, change: Callable[[], object]) -> IndexReport:
        """The run that follows `change`, made again until the watcher (maybe still starting,
        which nothing announces) reacts."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            change()
            try:
                return self.reports.get(timeout=5)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise


@pytest.fixture
def watching(docs: Path, tmp_path: Path, embedder: Embedder) -> Iterator[tuple[Runs, Settings]]:
    settings = Settings(index=tmp_path / "index")
    build_index(docs, settings, embedder=embedder)
    runs = Runs()
    watch = FolderWatch(
        docs, settings, runs.reports.put, runs.errors.append, embedder, debounce_ms=200
    )
    watch.start()
    yield runs, settings
    watch.stop()
    assert runs.errors == []


def test_added_changed_and_deleted_files_are_indexed_as_they_happen(
    docs: Path, watching: tuple[Runs, Settings]
) -> None:
    runs, _ = watching
    added = runs.after(lambda: (docs / "orchard.txt").write_text(ORCHARD, encoding="utf-8"))
    assert [(f.path, f.status) for f in added.files if f.status != "unchanged"] == [
        ("orchard.txt", "added")
    ]
    assert describe_run(added).startswith("re-indexed: 1 added, 0 changed, 0 removed")

    (docs / "orchard.txt").write_text(ORCHARD + "It has a cider press.\n", encoding="utf-8")
    changed = runs.next()
    assert [(f.path, f.status) for f in changed.files if f.status != "unchanged"] == [
        ("orchard.txt", "updated")
    ]

    (docs / "lighthouse.txt").unlink()
    removed = runs.next()
    assert [(f.path, f.status) for f in removed.files if f.status != "unchanged"] == [
        ("lighthouse.txt", "removed")
    ]


def test_the_index_folder_and_hidden_files_do_not_trigger_runs(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    settings = Settings(index=root / "idx")
    watch = FolderWatch(root, settings, lambda report: None, lambda error: None)
    assert watch._matters(Change.added, str(root / "notes.txt"))
    assert watch._matters(Change.modified, str(root / "sub" / "notes.md"))
    assert not watch._matters(Change.added, str(root / "idx" / "gen-1.tmp" / "meta.sqlite"))
    assert not watch._matters(Change.added, str(root / "idx"))
    assert not watch._matters(Change.added, str(root / ".git" / "index"))
    assert not watch._matters(Change.added, str(root / ".notes.txt.swp"))


def test_ctrl_c_stops_the_watch_even_when_its_keyboard_interrupt_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C ends the watch with KeyboardInterrupt even if the exception itself is swallowed
    on the way (as a watch left running after Ctrl-C showed, about once in twenty runs)."""
    import threading

    root = tmp_path / "docs"
    root.mkdir()
    watch = FolderWatch(root, Settings(index=tmp_path / "idx"), lambda r: None, lambda e: None)

    def swallowing_filter(change: Change, path: str) -> bool:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # the handler runs here, and its exception is lost
        except KeyboardInterrupt:
            pass
        return False

    monkeypatch.setattr(watch, "_matters", swallowing_filter)
    # Not always Python's default: a shell starts background jobs with SIGINT ignored.
    handler_before = signal.getsignal(signal.SIGINT)
    threading.Timer(0.5, (root / "notes.txt").write_text, ["a change to see"]).start()
    # Without the fix the watch would go on; this ends the test then, failing it.
    give_up = threading.Timer(DEADLINE_S, watch._stop.set)
    give_up.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            watch.run_until_interrupted()
    finally:
        give_up.cancel()
    assert signal.getsignal(signal.SIGINT) is handler_before  # the watch puts back what it found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _paracite(*args: str, **options: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        **options,  # type: ignore[call-overload]
    )


def _wait_for(check: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_watch_indexes_the_folder_and_serves_each_change(docs: Path, tmp_path: Path) -> None:
    port = _free_port()
    index_dir = tmp_path / "served-index"
    server = _paracite(
        "serve", "--watch", str(docs), "--index", str(index_dir), "--port", str(port)
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: httpx.get(f"{url}/healthz").status_code == 200, "the server")

        def documents() -> set[str]:
            listed = httpx.get(f"{url}/api/documents").json()["documents"]
            return {document["doc_id"] for document in listed}

        assert documents() == {"lighthouse.txt"}
        written = [0.0]

        def orchard_served() -> bool:
            if documents() == {"lighthouse.txt", "orchard.txt"}:
                return True
            if time.monotonic() - written[0] > 5:  # again, in case the watch was not yet up
                (docs / "orchard.txt").write_text(ORCHARD, encoding="utf-8")
                written[0] = time.monotonic()
            return False

        _wait_for(orchard_served, "the new file")
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=DEADLINE_S)
    assert "re-indexed: 1 added, 0 changed, 0 removed, 0 skipped" in output
    assert "Traceback" not in output


def test_serve_refuses_a_port_out_of_range_and_a_busy_port_in_one_line(
    seed_index: Path,
) -> None:
    out_of_range = _paracite("serve", "--index", str(seed_index), "--port", "99999")
    output, _ = out_of_range.communicate(timeout=DEADLINE_S)
    assert out_of_range.returncode == 2
    assert "99999 is not in the range 1<=x<=65535" in output
    assert "Traceback" not in output

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = _paracite("serve", "--index", str(seed_index), "--port", port)
        output, _ = busy.communicate(timeout=DEADLINE_S)
    assert busy.returncode == 1
    assert output.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_index_watch_keeps_the_index_up_to_date_until_interrupted(
    docs: Path, tmp_path: Path
) -> None:
    from indexer.store import read_stats

    index_dir = tmp_path / "watched-index"
    watcher = _paracite("index", str(docs), "--index", str(index_dir), "--watch", "-q")
    written = [0.0]

    def orchard_indexed() -> bool:
        if index_dir.joinpath("CURRENT").exists() and read_stats(index_dir).documents == 2:
            return True
        if index_dir.joinpath("CURRENT").exists() and time.monotonic() - written[0] > 5:
            (docs / "orchard.txt").write_text(ORCHARD, encoding="utf-8")  # again if missed
            written[0] = time.monotonic()
        return False

    try:
        _wait_for(orchard_indexed, "the new file in the index")
    finally:
        watcher.send_signal(signal.SIGINT)
        output, _ = watcher.communicate(timeout=DEADLINE_S)
    assert "watching" in output
    assert "re-indexed: 1 added, 0 changed, 0 removed, 0 skipped" in output
    assert "Traceback" not in output
