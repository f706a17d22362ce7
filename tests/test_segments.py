"""A segmented index: runs write segments for what changed, deletions hide replaced documents,
merges keep the number of segments down, and search reads all of them as one index."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexer import build as build_module
from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.retrieval import Scope, Searcher
from indexer.segments import plan_merge, tier
from indexer.settings import Settings
from indexer.store import (
    MANIFEST,
    MetadataStore,
    SegmentEntry,
    current_generation,
    live_segments,
)

TOPICS = {
    "apples.txt": "Apples grow on trees in orchards.\n\nThey are harvested in autumn by pickers.",
    "boats.txt": "Boats float on water because of buoyancy.\n\nSails catch the wind.",
    "cats.txt": "Cats sleep for most of the day.\n\nThey hunt mice at night.",
    "notes/dunes.txt": "Sand dunes move with the wind across the desert.",
    "notes/eels.txt": "Eels migrate to the Sargasso Sea to spawn.",
    "notes/ferns.txt": "Ferns reproduce by spores rather than seeds.",
}
QUESTIONS = (
    "When are apples harvested?",
    "Why do boats float?",
    "What do cats hunt at night?",
    "Where do eels spawn?",
    "How do ferns reproduce?",
    "wind",
)


def _write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _manifest(index_dir: Path) -> dict:  # type: ignore[type-arg]
    generation = current_generation(index_dir)
    assert generation is not None
    return json.loads((generation / MANIFEST).read_text(encoding="utf-8"))


def _answers(index_dir: Path, embedder: Embedder) -> list[object]:
    """What the index answers to every question: hits (with scores) and answers."""
    searcher = Searcher.open(index_dir, embedder)
    try:
        out: list[object] = []
        for question in QUESTIONS:
            result = searcher.ask(question, k=4)
            out.append(
                (
                    [
                        (h.passage.doc_id, h.passage.paragraph, round(h.score, 5))
                        for h in result.hits
                    ],
                    result.answer and result.answer.text,
                )
            )
        return out
    finally:
        searcher.close()


def _settings(tmp_path: Path, name: str, **overrides: object) -> Settings:
    return Settings(index=tmp_path / name, **overrides)  # type: ignore[arg-type]


def _built_in_one_run(docs: Path, like: Settings, embedder: Embedder) -> Settings:
    """An index of `docs` built in one run, with the vectors `like` has (its embedding cache):
    int8 vectors depend a little on what they were batched with."""
    whole = Settings(index=like.index.parent / f"{like.index.name}-whole")
    shutil.copytree(like.index / "cache", whole.index / "cache")
    report = build_index(docs, whole, embedder=embedder)
    assert report.embedded == 0
    return whole


def test_one_run_per_file_gives_segments_searched_as_one_index(
    tmp_path: Path, embedder: Embedder
) -> None:
    """Files added one run at a time make one segment each; search over them ranks and
    scores (BM25 statistics included) exactly as an index built in one run."""
    docs = tmp_path / "docs"
    segmented = _settings(tmp_path, "segmented", segments_per_tier=100)
    for name, text in TOPICS.items():
        _write(docs, name, text)
        report = build_index(docs, segmented, embedder=embedder)
        assert (
            report.count("added") == 1
            and report.count("unchanged") == len(list(docs.rglob("*.txt"))) - 1
        )
    assert len(live_segments(segmented.index)) == len(TOPICS)
    whole = _built_in_one_run(docs, segmented, embedder)
    assert len(live_segments(whole.index)) == 1
    assert _answers(segmented.index, embedder) == _answers(whole.index, embedder)


def test_a_run_writes_only_what_changed_and_leaves_old_segments_untouched(
    tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    for name, text in TOPICS.items():
        _write(docs, name, text)
    settings = _settings(tmp_path, "idx")
    build_index(docs, settings, embedder=embedder)
    (first,) = live_segments(settings.index)
    stamps = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}

    _write(docs, "apples.txt", "Apples grow on trees.\n\nPears ripen after picking.")
    (docs / "cats.txt").unlink()
    _write(docs, "glaciers.txt", "Glaciers carve valleys over thousands of years.")
    report = build_index(docs, settings, embedder=embedder)
    statuses = {f.path: f.status for f in report.files if f.status != "unchanged"}
    assert statuses == {"apples.txt": "updated", "cats.txt": "removed", "glaciers.txt": "added"}

    old, new = live_segments(settings.index)
    assert old == first
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == stamps
    entries = _manifest(settings.index)["segments"]
    assert entries[0]["deleted"] == ["apples.txt", "cats.txt"]
    assert entries[1]["documents"] == 2  # only the changed and the added file

    searcher = Searcher.open(settings.index, embedder)
    try:
        stats = searcher.stats()
        assert stats.documents == len(TOPICS)  # 6 - cats + glaciers
        listed = [d.doc_id for d in searcher.documents()]
        assert listed == sorted(listed) and "cats.txt" not in listed
        assert listed.count("apples.txt") == 1
        pears = searcher.ask("When do pears ripen?", k=3)
        assert (pears.hits[0].passage.doc_id, pears.hits[0].passage.paragraph) == ("apples.txt", 2)
        every_hit = [
            h.passage
            for question in (*QUESTIONS, "apples harvested autumn pickers", "cats mice")
            for h in searcher.search(question, k=10).hits
        ]
        assert all(p.doc_id != "cats.txt" for p in every_hit)
        assert all("harvested in autumn" not in p.text for p in every_hit)
        assert searcher.document("apples.txt").blocks[-1].text == "Pears ripen after picking."
        # Filters see the live documents of every segment.
        scoped = searcher.search("valleys", k=5, scope=Scope(doc="glaciers.txt"))
        assert {h.passage.doc_id for h in scoped.hits} == {"glaciers.txt"}
        in_notes = searcher.search("wind", k=10, scope=Scope(folder="notes"))
        assert {h.passage.doc_id for h in in_notes.hits} <= {
            "notes/dunes.txt",
            "notes/eels.txt",
            "notes/ferns.txt",
        }
        with pytest.raises(Exception, match="no document 'cats.txt'"):
            searcher.search("cats", scope=Scope(doc="cats.txt"))
    finally:
        searcher.close()
    assert build_index(docs, settings, embedder=embedder).up_to_date


def test_segments_of_a_tier_are_merged_and_deleted_rows_dropped(
    tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    settings = _settings(tmp_path, "idx", segments_per_tier=3)
    for name, text in TOPICS.items():
        _write(docs, name, text)
        build_index(docs, settings, embedder=embedder)
        assert len(live_segments(settings.index)) < 3
    _write(docs, "boats.txt", "Boats float on water.\n\nKeels keep them upright.")
    report = build_index(docs, settings, embedder=embedder)
    assert report.embedded > 0 and report.count("updated") == 1
    assert (report.segments, report.merged) == (1, 3)
    # Three segments (the changed file's among them) were merged into one, without the
    # replaced document's rows: it scores as an index built in one run.
    (entry,) = _manifest(settings.index)["segments"]
    assert entry["deleted"] == [] and entry["documents"] == len(TOPICS)
    assert sorted(_segment_docs(settings.index, entry)) == sorted(TOPICS)
    whole = _built_in_one_run(docs, settings, embedder)
    assert _answers(settings.index, embedder) == _answers(whole.index, embedder)
    assert [p.name for p in (settings.index / "segments").iterdir()] != []
    listed = {e["name"] for g in settings.index.glob("gen-*") for e in _read(g)["segments"]}
    assert {p.name for p in (settings.index / "segments").iterdir()} == listed


def _read(generation: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((generation / MANIFEST).read_text(encoding="utf-8"))


def _segment_docs(index_dir: Path, entry: dict) -> list[str]:  # type: ignore[type-arg]
    """The live documents of a segment, read from its metadata."""
    with MetadataStore.open(index_dir / "segments" / entry["name"], entry["deleted"]) as store:
        return [info.doc_id for info in store.documents()]


def test_a_mostly_deleted_segment_is_rewritten_without_its_deleted_rows(
    tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    for name, text in TOPICS.items():
        _write(docs, name, text)
    settings = _settings(tmp_path, "idx")
    build_index(docs, settings, embedder=embedder)
    for name in ("apples.txt", "boats.txt", "cats.txt", "notes/dunes.txt"):
        (docs / name).unlink()
    report = build_index(docs, settings, embedder=embedder)
    assert report.count("removed") == 4 and report.embedded == 0
    (entry,) = _manifest(settings.index)["segments"]
    assert entry["deleted"] == [] and entry["documents"] == 2
    searcher = Searcher.open(settings.index, embedder)
    try:
        assert [d.doc_id for d in searcher.documents()] == ["notes/eels.txt", "notes/ferns.txt"]
        assert searcher.ask("Where do eels spawn?").hits[0].passage.doc_id == "notes/eels.txt"
    finally:
        searcher.close()


def test_removing_every_file_leaves_an_empty_index_that_answers_nothing(
    tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    _write(docs, "apples.txt", TOPICS["apples.txt"])
    settings = _settings(tmp_path, "idx")
    build_index(docs, settings, embedder=embedder)
    (docs / "apples.txt").unlink()
    report = build_index(docs, settings, embedder=embedder)
    assert report.count("removed") == 1
    assert live_segments(settings.index) == []
    searcher = Searcher.open(settings.index, embedder)
    try:
        result = searcher.ask("When are apples harvested?")
        assert result.hits == [] and result.answer is None
    finally:
        searcher.close()


def test_sigkill_during_a_merge_leaves_the_published_changes_serving(
    tmp_path: Path, embedder: Embedder
) -> None:
    """A run publishes its changes before it merges: killed in the merge, the index still
    answers with them, and the next run finishes the merge."""
    docs = tmp_path / "docs"
    settings = _settings(tmp_path, "idx", segments_per_tier=2)
    _write(docs, "apples.txt", TOPICS["apples.txt"])
    build_index(docs, settings, embedder=embedder)
    _write(docs, "eels.txt", TOPICS["notes/eels.txt"])
    held = tmp_path / "held"
    hook = {
        "PARACITE_TEST_HOLD_AT": "merge",
        "PARACITE_TEST_HOLD_FILE": str(held),
        "PARACITE_SEGMENTS_PER_TIER": "2",
    }
    command = [
        sys.executable,
        "-m",
        "server.cli",
        "index",
        str(docs),
        "--index",
        str(settings.index),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **hook}
    )
    try:
        deadline = time.monotonic() + 180  # against a hang, not a guess at speed
        while not held.exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the run never reached the merge"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL

    assert len(live_segments(settings.index)) == 2  # published, not merged
    searcher = Searcher.open(settings.index, embedder)
    try:
        assert searcher.ask("Where do eels spawn?").hits[0].passage.doc_id == "eels.txt"
    finally:
        searcher.close()
    report = build_index(docs, settings, embedder=embedder)
    assert report.embedded == 0 and len(live_segments(settings.index)) == 1
    assert _answers(settings.index, embedder)[3][0][0][0] == "eels.txt"  # type: ignore[index]


def _entry(name: str, passages: int, deleted: int = 0, ann: bool = False) -> SegmentEntry:
    return SegmentEntry(
        name=name,
        documents=max(passages, 1),
        passages=passages,
        sentences=passages,
        ann={"factory": "HNSW32,SQ8", "ef_search": 256, "nprobe": 0} if ann else None,
        deleted=("x",) if deleted else (),
        deleted_passages=deleted,
    )


def test_the_merge_policy_merges_the_smallest_crowded_tier_first() -> None:
    assert [tier(n) for n in (1, 999, 1000, 9999, 10_000, 2_000_000)] == [0, 0, 1, 1, 2, 4]
    no_ann = lambda passages: False  # noqa: E731
    small = [_entry(f"seg-s{i}", 10 + i) for i in range(3)]
    large = [_entry(f"seg-l{i}", 5000 + i) for i in range(3)]
    assert plan_merge([*large[:2], *small[:2]], no_ann, 3) == []
    assert plan_merge([*large, *small], no_ann, 3) == small
    assert plan_merge([*large, *small[:2]], no_ann, 3) == large
    assert plan_merge([*large, *small], no_ann, 10) == []
    mostly_deleted = _entry("seg-d", 100, deleted=60)
    assert plan_merge([*small[:1], mostly_deleted], no_ann, 10) == [mostly_deleted]
    # A segment whose ANN structure no longer fits the settings is rewritten.
    with_ann = _entry("seg-a", 100, ann=True)
    assert plan_merge([with_ann], no_ann, 10) == [with_ann]
    assert plan_merge([with_ann], lambda passages: True, 10) == []


def test_a_run_written_a_few_passages_at_a_time_is_the_same_index(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are embedded and written in batches (memory bounded by the batch, not the
    collection): batches of one passage give the same index as one batch of everything."""
    docs = tmp_path / "docs"
    for name, text in TOPICS.items():
        _write(docs, name, text)
    whole = _settings(tmp_path, "whole")
    build_index(docs, whole, embedder=embedder)
    monkeypatch.setattr(build_module, "WRITE_BATCH", 1)
    monkeypatch.setattr(build_module, "MERGE_BATCH", 1)
    batched = _settings(tmp_path, "batched")
    shutil.copytree(whole.index / "cache", batched.index / "cache")
    assert build_index(docs, batched, embedder=embedder).embedded == 0
    assert _answers(batched.index, embedder) == _answers(whole.index, embedder)
    for name in ("apples.txt", "boats.txt", "cats.txt", "notes/dunes.txt"):
        (docs / name).unlink()
    build_index(docs, batched, embedder=embedder)  # the mostly deleted segment is rewritten
    (entry,) = _manifest(batched.index)["segments"]
    assert entry["deleted"] == [] and entry["documents"] == 2
    searcher = Searcher.open(batched.index, embedder)
    try:
        assert searcher.ask("How do ferns reproduce?").hits[0].passage.doc_id == "notes/ferns.txt"
    finally:
        searcher.close()


def test_a_server_moving_to_a_new_generation_reopens_only_new_segments(
    tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    _write(docs, "apples.txt", TOPICS["apples.txt"])
    settings = _settings(tmp_path, "idx")
    build_index(docs, settings, embedder=embedder)
    before = Searcher.open(settings.index, embedder)
    _write(docs, "boats.txt", TOPICS["boats.txt"])
    build_index(docs, settings, embedder=embedder)
    after = Searcher.open(settings.index, embedder)
    try:
        old_reader = before.segments[0]
        assert after.segments[0] is old_reader  # the unchanged segment, shared
        assert len(after.segments) == 2 and after.segments[1] is not old_reader
        assert after.search("Why do boats float?", k=1).hits[0].passage.doc_id == "boats.txt"
        # Deletions are the generation's own: the old searcher still sees what it saw.
        (docs / "apples.txt").unlink()
        build_index(docs, settings, embedder=embedder)
        latest = Searcher.open(settings.index, embedder)
        try:
            assert [d.doc_id for d in latest.documents()] == ["boats.txt"]
            assert before.search("apples", k=1).hits[0].passage.doc_id == "apples.txt"
            assert latest.search("apples", k=3).hits[0].passage.doc_id == "boats.txt"
        finally:
            latest.close()
    finally:
        before.close()
        after.close()


@pytest.mark.parametrize("passages", ["standalone", "pooled"])
def test_a_text_met_again_in_a_later_batch_of_the_run_is_not_embedded_again(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch, passages: str
) -> None:
    docs = tmp_path / "docs"
    shared = "Tides follow the moon. They rise twice a day."
    for name in ("a/notes.txt", "b/notes.txt", "c/notes.txt"):  # one title, "notes"
        _write(docs, name, f"{shared}\n\nOnly {name} says this.")
    monkeypatch.setattr(build_module, "WRITE_BATCH", 1)  # one file per batch
    embedded: list[str] = []
    encode = embedder.encoder.encode

    def recording(texts: list[str], batch_size: int, on_progress: object = None) -> object:
        embedded.extend(texts)
        return encode(texts, batch_size)

    monkeypatch.setattr(embedder.encoder, "encode", recording)
    report = build_index(
        docs, _settings(tmp_path, "idx", passage_vectors=passages), embedder=embedder
    )
    assert len(embedded) == len(set(embedded)) == report.embedded
    assert embedded.count("Tides follow the moon.") == 1
