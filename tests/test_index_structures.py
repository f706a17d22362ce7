"""The index structures behind search: vectors, lexical postings, metadata, ANN vs exact."""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bm25s
import faiss
import numpy as np
import pytest

from indexer import lexical as lexical_module
from indexer import vectors as vectors_module
from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.errors import IndexCorrupt, ModelMismatch
from indexer.lexical import (
    BM25_B,
    BM25_K1,
    TERM_BOUNDS,
    Bm25Norm,
    LexicalIndex,
    LexicalSegment,
)
from indexer.ranking import RowRanges, RowScores
from indexer.retrieval import Searcher
from indexer.settings import Settings
from indexer.store import (
    PASSAGE_VECTORS,
    SENTENCE_OFFSETS,
    SENTENCE_VECTORS,
    current_generation,
    live_segments,
    read_sentence_offsets,
    read_stats,
)
from indexer.vectors import (
    AnnConfig,
    FaissVectorIndex,
    FileRows,
    VectorFileWriter,
    ann_path_of,
    check_vector_file,
)

INDEXER = Path(__file__).resolve().parent.parent / "indexer"
QUESTIONS = (
    "How many documents were examined between 2024 and March 2025?",
    "Why does Kim Jong Un distrust the United States?",
    "What does the Acheson Line symbolize for South Koreans?",
    "Who wrote the article about Trump's tough love on Kim?",
    "Vladivostok summit",
    "What did Trump say about North Korea's nuclear status?",
)


def _unit_vectors(count: int, dimension: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _saved(tmp_path: Path, vectors: np.ndarray, **options: object) -> FaissVectorIndex:
    index = FaissVectorIndex.empty(vectors.shape[1])
    index.add(vectors)
    index.save(tmp_path / "v.npy", **options)  # type: ignore[arg-type]
    return FaissVectorIndex.open(tmp_path / "v.npy", options.get("ann_config"))  # type: ignore[arg-type]


# -- vectors ------------------------------------------------------------------------------------


def test_vectors_are_memory_mapped_read_only(tmp_path: Path) -> None:
    index = _saved(tmp_path, _unit_vectors(50))
    stored = index._stored
    assert isinstance(stored, np.memmap) and stored.mode == "r"
    with pytest.raises(ValueError, match="read-only"):
        stored[0, 0] = 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_vectors_written_a_block_at_a_time_read_back_as_one_npy_file(
    tmp_path: Path, dtype: type[np.floating]
) -> None:
    data = _unit_vectors(70)
    writer = VectorFileWriter(tmp_path / "v.npy", 16, dtype)
    for start in range(0, 70, 32):
        writer.append(data[start : start + 32])
    writer.close()
    check_vector_file(tmp_path / "v.npy", (70, 16), dtype)
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), data.astype(dtype))
    empty = VectorFileWriter(tmp_path / "none.npy", 16, dtype)
    empty.close()
    assert np.load(tmp_path / "none.npy").shape == (0, 16)


def test_seed_index_files_are_memory_mapped_read_only(seed_index: Path) -> None:
    (segment,) = live_segments(seed_index)
    sentences = FaissVectorIndex.open(segment / SENTENCE_VECTORS)._stored
    assert isinstance(sentences, np.memmap) and sentences.mode == "r"
    offsets = read_sentence_offsets(segment)
    assert isinstance(offsets, np.memmap) and offsets.mode == "r"
    assert int(offsets[-1]) == len(sentences)


def test_exact_search_matches_brute_force_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _unit_vectors(300)
    index = _saved(tmp_path, data)
    query = data[7]
    expected = np.argsort(-(data @ query), kind="stable")[:20]
    assert list(index.search(query, 20).rows) == list(expected)
    monkeypatch.setattr(vectors_module, "SCAN_CHUNK", 32)
    found = index.search(query, 20)
    assert list(found.rows) == list(expected)
    np.testing.assert_allclose(found.scores, (data @ query)[expected], rtol=1e-5)
    rows = np.array([299, 3, 150])
    np.testing.assert_allclose(index.score(query, rows), data[rows] @ query, rtol=1e-5)


@pytest.mark.parametrize("ann", [False, True])
def test_search_within_ranges_ranks_those_rows_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ann: bool
) -> None:
    data = _unit_vectors(400, dimension=32)
    config = AnnConfig("HNSW16,SQ8", ef_search=64) if ann else None
    index = _saved(tmp_path, data, ann_config=config)
    within = RowRanges(np.array([[10, 60], [200, 230]], dtype=np.int64))
    allowed = within.rows()
    query = data[300]  # outside the ranges: its neighbours mostly are too
    expected = allowed[np.argsort(-(data[allowed] @ query), kind="stable")[:15]]
    monkeypatch.setattr(vectors_module, "SCAN_CHUNK", 16)  # ranges cut into pieces
    assert list(index.search(query, 15, within=within).rows) == list(expected)
    # a scope too wide for an exact scan filters a widened ANN search instead
    monkeypatch.setattr(vectors_module, "EXACT_IN_SCOPE", 10)
    found = index.search(query, 15, within=within)
    assert within.contains(found.rows).all() and len(found) == 15
    if not ann:
        assert list(found.rows) == list(expected)


def test_added_and_removed_rows_are_searched_as_such(tmp_path: Path) -> None:
    data = _unit_vectors(40)
    index = _saved(tmp_path, data[:30])
    assert list(index.add(data[30:])) == list(range(30, 40))
    assert len(index) == 40
    assert index.search(data[35], 1).rows[0] == 35
    index.remove(np.array([35, 7]))
    found = index.search(data[35], 40).rows
    assert 35 not in found and 7 not in found and len(found) == 38


def test_float16_storage_keeps_the_ranking_of_distinct_scores(tmp_path: Path) -> None:
    data = _unit_vectors(200, dimension=64)
    half = _saved(tmp_path, data, dtype=np.float16)
    assert half._stored.dtype == np.float16
    query = data[11]
    assert list(half.search(query, 5).rows) == list(np.argsort(-(data @ query))[:5])


def test_ann_candidates_are_rescored_exactly(tmp_path: Path) -> None:
    data = _unit_vectors(500, dimension=32)
    config = AnnConfig("HNSW16,SQ8", ef_search=64)
    index = _saved(tmp_path, data, ann_config=config)
    assert index.uses_ann and ann_path_of(tmp_path / "v.npy").is_file()
    for row in (0, 42, 499):
        found = index.search(data[row], 10)
        assert found.rows[0] == row and len(set(found.rows)) == 10
        np.testing.assert_allclose(found.scores, data[found.rows] @ data[row], rtol=1e-5)
        assert list(found.scores) == sorted(found.scores, reverse=True)


def test_file_rows_are_the_rows_a_memory_map_holds(tmp_path: Path) -> None:
    vectors = _unit_vectors(300)
    np.save(tmp_path / "v.npy", vectors)
    rows = FileRows(tmp_path / "v.npy", np.load(tmp_path / "v.npy", mmap_mode="r"))
    assert rows.shape == vectors.shape and len(rows) == 300
    wanted = np.array([299, 0, 5, 6, 7, 5, 120, 121, 3], dtype=np.int64)  # any order, repeats
    np.testing.assert_array_equal(rows[wanted], vectors[wanted])
    np.testing.assert_array_equal(rows[10:40], vectors[10:40])
    np.testing.assert_array_equal(rows[290:1000], vectors[290:])
    assert rows[np.zeros(0, dtype=np.int64)].shape == (0, 16)
    with pytest.raises(IndexError):
        rows[np.array([300])]
    with open(tmp_path / "v.npy", "r+b") as cut:
        cut.truncate((tmp_path / "v.npy").stat().st_size - 100)
    with pytest.raises(IndexCorrupt, match="cut short"):
        rows[np.array([299])]


def test_vector_files_over_the_map_limit_are_read_by_row_with_the_same_answers(
    seed_index: Path, tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large vector files are read, not mapped (pages mapped stay in a server's RSS): the
    seeds' answers are the same either way."""
    copy = tmp_path / "index"  # another folder: segments not opened before in this process
    shutil.copytree(seed_index, copy)
    mapped = Searcher(seed_index, embedder)
    monkeypatch.setattr(vectors_module, "MAP_LIMIT_BYTES", 0)
    read = Searcher(copy, embedder)
    try:
        (segment,) = read.segments
        assert isinstance(segment.sentence_vectors._stored, FileRows)
        assert isinstance(segment.passage_vectors._stored, FileRows)
        assert not isinstance(mapped.segments[0].sentence_vectors._stored, FileRows)
        for question in QUESTIONS:
            got, want = read.ask(question, k=5), mapped.ask(question, k=5)
            assert [(h.passage, h.score) for h in got.hits] == [
                (h.passage, h.score) for h in want.hits
            ]
            assert (got.answer and got.answer.text) == (want.answer and want.answer.text)
    finally:
        read.close()
        mapped.close()


# -- lexical ------------------------------------------------------------------------------------

ROWS = [
    "north korea nuclear talk summit".split(),
    "summit hanoi trump kim".split(),
    "bread bake oven".split(),
    "kim trump letter love".split(),
    "nuclear nuclear power plant".split(),
    [],
    "oven temperature bread crust".split(),
]


@pytest.mark.parametrize(
    "terms", [["summit", "kim"], ["nuclear"], ["bread", "oven", "kim"], ["zzz"]]
)
def test_lexical_scores_by_row_equal_bm25s_full_scores(tmp_path: Path, terms: list[str]) -> None:
    LexicalSegment.write(tmp_path / "lex", ROWS)
    lexical = LexicalIndex.open(tmp_path / "lex", len(ROWS))
    reference = bm25s.BM25(k1=BM25_K1, b=BM25_B)
    reference.index(ROWS, show_progress=False)
    known = [term for term in terms if term in reference.vocab_dict]
    full = reference.get_scores(known) if known else np.zeros(len(ROWS))
    rows = np.array([6, 0, 3, 3, 1])
    np.testing.assert_allclose(lexical.score(terms, rows), full[rows], rtol=1e-5)
    top = lexical.top(terms, 3)
    positive = np.flatnonzero(full > 0)
    assert len(top) == min(3, len(positive))
    np.testing.assert_allclose(top.scores, np.sort(full[positive])[::-1][: len(top)], rtol=1e-5)
    assert set(top.rows) <= set(positive)


@pytest.mark.parametrize("split", [[3], [1, 4], [2, 5, 6]])
def test_bm25_over_segments_equals_bm25_over_all_their_rows(
    tmp_path: Path, split: list[int]
) -> None:
    """Collection statistics are summed over segments: a question scores every row as one
    index over all the rows would, however they are split into segments."""
    LexicalSegment.write(tmp_path / "all", ROWS)
    whole = LexicalIndex.open(tmp_path / "all", len(ROWS))
    bounds = [0, *split, len(ROWS)]
    parts = []
    for i, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
        LexicalSegment.write(tmp_path / f"part{i}", ROWS[start:end])
        parts.append(LexicalSegment.open(tmp_path / f"part{i}", end - start))
    segmented = LexicalIndex(parts)
    everything = np.arange(len(ROWS))
    for terms in (["summit", "kim"], ["nuclear", "bread"], ["oven"], ["zzz"]):
        np.testing.assert_allclose(
            segmented.score(terms, everything), whole.score(terms, everything), rtol=1e-6
        )
    # Deleted rows never match, and leave the other rows' scores alone.
    deleted = RowRanges(np.array([[1, 2]], dtype=np.int64))
    without = LexicalIndex(parts, deleted).match(["summit", "kim"]).every()
    assert 1 not in without.rows
    expected = whole.score(["summit", "kim"], without.rows)
    np.testing.assert_allclose(without.scores, expected, rtol=1e-6)


@pytest.fixture
def pruning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Best rows sought by pruning however few postings a question's terms have (small
    test collections would otherwise have every posting scored)."""
    monkeypatch.setattr(lexical_module, "PRUNE_FROM_POSTINGS", 0)


def _zipf_rows(seed: int, rows: int, vocabulary: int = 300) -> list[list[str]]:
    """Rows of 0-30 terms drawn with a Zipf-like skew: a few terms in most rows, many rare."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, vocabulary + 1)
    weights /= weights.sum()
    return [
        [f"t{i}" for i in rng.choice(vocabulary, size=rng.integers(0, 31), p=weights)]
        for _ in range(rows)
    ]


def _split_index(
    tmp_path: Path,
    rows: list[list[str]],
    cuts: list[int],
    deleted: RowRanges | None = None,
    term_bounds: bool = True,
) -> LexicalIndex:
    """`rows` written as segments cut at `cuts` (without their term bounds: as segments
    written before there were any)."""
    bounds = [0, *cuts, len(rows)]
    parts = []
    for i, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
        LexicalSegment.write(tmp_path / f"seg{i}", rows[start:end])
        if not term_bounds:
            (tmp_path / f"seg{i}" / TERM_BOUNDS).unlink()
        parts.append(LexicalSegment.open(tmp_path / f"seg{i}", end - start))
    return LexicalIndex(parts, deleted)


def _assert_same_best(found: RowScores, every: RowScores) -> None:
    """The same scores, bit for bit, and the same rows but for ties at the last score."""
    np.testing.assert_array_equal(found.scores, every.scores)
    if len(every):
        last = every.scores[-1]
        assert set(found.rows[found.scores > last]) == set(every.rows[every.scores > last])


@pytest.mark.parametrize("bounds_file", [True, False])
def test_best_rows_found_without_scoring_every_row_equal_those_of_scoring_every_row(
    tmp_path: Path, bounds_file: bool, pruning: None
) -> None:
    """Segments of different mean row lengths, deleted rows, rare and common terms: the
    pruned search gives exactly the best of all scores, with the segments' term bounds and
    without them (segments written before them)."""
    rows = _zipf_rows(0, 1500)
    # Later rows are shorter: the segments' mean lengths differ from the collection's.
    rows[1000:] = [row[: len(row) // 3] for row in rows[1000:]]
    deleted = RowRanges(np.array([[40, 90], [1200, 1210]], dtype=np.int64))
    index = _split_index(tmp_path, rows, [700, 1000, 1400], deleted, bounds_file)
    rng = np.random.default_rng(1)
    for _ in range(40):
        terms = [f"t{i}" for i in rng.choice(300, size=rng.integers(1, 9))]
        every = index.match(terms).every()
        for n in (1, 7, 60):
            _assert_same_best(index.match(terms).top(n), every.top(n))
        sample = rng.integers(0, len(rows), 50)
        np.testing.assert_array_equal(index.match(terms).score(sample), every.score(sample))


def test_rows_that_cannot_reach_the_best_are_not_read_through(
    tmp_path: Path, pruning: None
) -> None:
    """A rare term with high scores and a term in every row: the best row is found from the
    rare term's postings, the common term only looked up for its rows."""
    rows = [["common", "filler"] for _ in range(2000)]
    for row in (5, 900, 1500):
        rows[row] = ["rare", "common"]
    index = _split_index(tmp_path, rows, [1000])
    query = index.match(["rare", "common"])
    best = query.top(3)
    assert sorted(best.rows.tolist()) == [5, 900, 1500]
    assert query.postings_read == 3  # the rare term's; "common" has 2,000
    _assert_same_best(best, query.every().top(3))


def test_questions_asked_at_once_share_score_buffers_and_get_their_own_answers(
    tmp_path: Path, pruning: None
) -> None:
    rows = _zipf_rows(2, 800)
    index = _split_index(tmp_path, rows, [400])
    questions = [[f"t{i}", f"t{i * 7 % 300}", "t1"] for i in range(60)]
    expected = [index.match(terms).every().top(20) for terms in questions]
    with ThreadPoolExecutor(8) as pool:  # more questions at once than buffers
        found = list(pool.map(lambda terms: index.match(terms).top(20), questions))
    for got, want in zip(found, expected, strict=True):
        _assert_same_best(got, want)


def test_segment_term_bounds_hold_every_posting_share(tmp_path: Path) -> None:
    rows = _zipf_rows(3, 300)
    LexicalSegment.write(tmp_path / "lex", rows)
    segment = LexicalSegment.open(tmp_path / "lex", len(rows))
    lengths = np.array([len(row) for row in rows], dtype=np.float32)
    for mean_length in (segment.mean_length, segment.mean_length / 2, segment.mean_length * 3):
        norm = Bm25Norm.of(mean_length)
        for term in ("t0", "t5", "t120"):
            holding, counts = segment.postings(term)
            shares = norm.shares(counts, lengths[holding])
            assert shares.max() <= segment.term_bound(term, mean_length) <= 1.0


def test_an_absent_lexical_folder_is_an_empty_index_when_nothing_is_indexed(
    tmp_path: Path,
) -> None:
    with pytest.raises(IndexCorrupt, match="missing"):
        LexicalIndex.open(tmp_path / "none", 3)
    lexical = LexicalIndex.open(tmp_path / "none", 0)
    assert len(lexical) == 0 and len(lexical.top(["kim"], 5)) == 0
    assert list(lexical.score(["kim"], np.array([0, 1]))) == [0.0, 0.0]


# -- metadata -----------------------------------------------------------------------------------


def test_sql_is_spoken_only_by_the_store() -> None:
    allowed = {"store.py", "embedding_cache.py"}  # the embedding cache: its own file
    speaking = [
        path.relative_to(INDEXER).as_posix()
        for path in INDEXER.rglob("*.py")
        if path.name not in allowed
        and re.search(r"\bexecute(many|script)?\(|\bsqlite3\b", path.read_text(encoding="utf-8"))
    ]
    assert speaking == []


def test_nothing_outside_the_searcher_calls_its_private_methods() -> None:
    for path in INDEXER.rglob("*.py"):
        if path.name != "retrieval.py":
            assert not re.search(r"searcher\._\w", path.read_text(encoding="utf-8")), path


def test_an_index_of_the_previous_format_is_refused_with_the_rebuild_hint(
    make_settings, seeds_copy: Path, embedder: Embedder
) -> None:
    settings = make_settings()
    build_index(seeds_copy, settings, embedder=embedder)
    generation = current_generation(settings.index)
    assert generation is not None
    manifest = json.loads((generation / "manifest.json").read_text())
    # As format 2 wrote it: no segments, the ANN structure of its one set of files.
    del manifest["segments"]
    older = {**manifest, "format_version": 2, "ann": None}
    (generation / "manifest.json").write_text(json.dumps(older))
    hint = re.escape("rebuild it with `paracite index --rebuild`")
    with pytest.raises(ModelMismatch, match=hint):
        Searcher.open(settings.index, embedder)
    with pytest.raises(ModelMismatch, match=hint):
        read_stats(settings.index)
    with pytest.raises(ModelMismatch, match=hint):
        build_index(seeds_copy, settings, embedder=embedder)
    build_index(seeds_copy, settings, embedder=embedder, rebuild=True)
    Searcher.open(settings.index, embedder).close()


# -- exact and ANN search on the seeds ----------------------------------------------------------


@pytest.fixture(scope="module")
def ann_seed_index(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, seeds_copy: Path
) -> Path:
    index_dir = tmp_path_factory.mktemp("ann") / "idx"
    build_index(seeds_copy, Settings(index=index_dir, ann_min_passages=0), embedder=embedder)
    return index_dir


def test_ann_is_built_at_index_time_and_used_above_the_threshold(
    ann_seed_index: Path, seed_index: Path, embedder: Embedder
) -> None:
    generation = current_generation(ann_seed_index)
    assert generation is not None
    (segment,) = live_segments(ann_seed_index)
    assert ann_path_of(segment / PASSAGE_VECTORS).is_file()
    manifest = json.loads((generation / "manifest.json").read_text())
    assert manifest["segments"][0]["ann"]["factory"]
    (exact_segment,) = live_segments(seed_index)
    assert not ann_path_of(exact_segment / PASSAGE_VECTORS).exists()
    for threshold, uses_ann in ((0, True), (10**9, False)):
        searcher = Searcher(ann_seed_index, embedder, ann_min_passages=threshold)
        assert searcher.uses_ann is uses_ann
        searcher.close()


@pytest.mark.parametrize("per_signal", [5, 200])
def test_ann_path_ranks_the_seeds_as_the_exact_path(
    ann_seed_index: Path, seed_index: Path, embedder: Embedder, per_signal: int
) -> None:
    approximate = Searcher(
        ann_seed_index, embedder, ann_min_passages=0, candidates_per_signal=per_signal
    )
    exact = Searcher(seed_index, embedder, candidates_per_signal=per_signal)
    try:
        assert approximate.uses_ann and not exact.uses_ann
        for question in QUESTIONS:
            for mode in ("hybrid", "dense"):
                want = exact.ask(question, k=5, mode=mode)  # type: ignore[arg-type]
                got = approximate.ask(question, k=5, mode=mode)  # type: ignore[arg-type]
                assert [h.passage for h in got.hits] == [h.passage for h in want.hits]
                assert (got.answer is None) == (want.answer is None)
                if got.answer and want.answer:
                    assert got.answer.text == want.answer.text
    finally:
        approximate.close()
        exact.close()


def test_a_changed_threshold_rebuilds_the_ann_structure(
    make_settings, seeds_copy: Path, embedder: Embedder
) -> None:
    settings = make_settings()
    build_index(seeds_copy, settings, embedder=embedder)
    assert build_index(seeds_copy, settings, embedder=embedder).up_to_date
    forced = settings.with_overrides(ann_min_passages=0)
    report = build_index(seeds_copy, forced, embedder=embedder)
    assert not report.up_to_date and report.embedded == 0
    (segment,) = live_segments(settings.index)
    assert ann_path_of(segment / PASSAGE_VECTORS).is_file()
    assert build_index(seeds_copy, forced, embedder=embedder).up_to_date


def test_the_author_note_answers_who_wrote_even_when_it_is_not_a_candidate(
    seed_index: Path, embedder: Embedder
) -> None:
    """With one candidate per signal the author note is not among the candidates; it is
    still ranked first and fused, so it offers the answer."""
    question = "Who wrote the article about Trump's tough love on Kim?"
    narrow = Searcher(seed_index, embedder, candidates_per_signal=1)
    try:
        candidates = {p.row for p in narrow.rank(question, depth=1)}
        result = narrow.ask(question)
        top = result.hits[0].passage
        author_paragraph = narrow.document(top.doc_id).info.metadata["author_paragraph"]
    finally:
        narrow.close()
    assert top.paragraph == author_paragraph
    assert result.answer is not None and result.answer.passage == 1
    assert result.answer.text in top.text
    assert len(candidates) == 1


@pytest.mark.parametrize("training_rows", [1000, 100])
def test_an_ann_structure_built_from_the_vector_file_equals_one_built_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, training_rows: int
) -> None:
    """Built block by block from the file (read, not mapped), with the quantiser trained on
    all rows or on blocks spread over them, it is the same structure."""
    monkeypatch.setattr(vectors_module, "TRAINING_ROWS", training_rows)
    monkeypatch.setattr(vectors_module, "TRAINING_BLOCK", 10)
    monkeypatch.setattr(vectors_module, "SCAN_CHUNK", 64)
    data = _unit_vectors(300)
    np.save(tmp_path / "v.npy", data)
    config = AnnConfig("HNSW32,SQ8", ef_search=64)
    config.write_from_file(tmp_path / "v.npy", tmp_path / "from-file.faiss")
    from_file = faiss.read_index(str(tmp_path / "from-file.faiss"))
    config.tune(from_file)
    in_memory = config.build(data)
    for query in data[:20]:
        found = [index.search(query.reshape(1, -1), 10) for index in (from_file, in_memory)]
        np.testing.assert_array_equal(found[0][1], found[1][1])
        np.testing.assert_allclose(found[0][0], found[1][0])


@pytest.mark.parametrize("name", ["term_bounds.npy", "posting_rows.npy", "row_lengths.npy"])
def test_an_empty_lexical_array_file_is_a_damaged_index(tmp_path: Path, name: str) -> None:
    """numpy raises EOFError on an empty .npy file: it must read as IndexCorrupt (a 503 and
    the rebuild hint), not escape as a crash."""
    LexicalSegment.write(tmp_path / "lex", ROWS)
    (tmp_path / "lex" / name).write_bytes(b"")
    with pytest.raises(IndexCorrupt, match="rebuild"):
        LexicalSegment.open(tmp_path / "lex", len(ROWS))


def test_an_empty_vector_file_is_a_damaged_index(tmp_path: Path) -> None:
    (tmp_path / "v.npy").write_bytes(b"")
    with pytest.raises(IndexCorrupt, match="rebuild"):
        FaissVectorIndex.open(tmp_path / "v.npy")


def test_an_empty_sentence_offsets_file_is_a_damaged_index(tmp_path: Path) -> None:
    (tmp_path / SENTENCE_OFFSETS).write_bytes(b"")
    with pytest.raises(IndexCorrupt, match="rebuild"):
        read_sentence_offsets(tmp_path)
