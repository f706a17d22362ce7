"""The optional reranker: a tiny cross-encoder built and saved here (random weights, no
download), loaded through `PARACITE_RERANKER`'s path, reorders the best fused passages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from sentence_transformers import CrossEncoder
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from indexer.embedding import Embedder, resolve_model
from indexer.errors import ModelUnavailable
from indexer.retrieval import Searcher
from indexer.search.rerank import RERANK_DEPTH, load_cross_encoder
from indexer.settings import Settings

QUESTION = "Why does Kim Jong Un distrust the United States?"
SPREAD = 100.0


def save_tiny_cross_encoder(folder: Path, *, negated: bool = False) -> Path:
    """A 2-layer BERT cross-encoder with random (seeded) weights and the bundled tokenizer,
    saved with CrossEncoder.save; `negated` flips its classifier, so its scores reverse."""
    torch.manual_seed(13)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        # Random weights score every pair about the same; spread them so no two tie.
        model.classifier.weight.mul_(-SPREAD if negated else SPREAD)
        model.classifier.bias.mul_(-1 if negated else 1)
    built = folder / "built"
    model.save_pretrained(built)
    AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2")).save_pretrained(built)
    saved = folder / "cross-encoder"
    CrossEncoder(str(built), device="cpu").save(str(saved))
    return saved


@pytest.fixture(scope="module")
def rerankers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("rerankers")
    return (
        save_tiny_cross_encoder(folder / "plain"),
        save_tiny_cross_encoder(folder / "negated", negated=True),
    )


@pytest.fixture(scope="module")
def plain(seed_index: Path, embedder: Embedder) -> Iterator[Searcher]:
    opened = Searcher.open(seed_index, embedder)
    yield opened
    opened.close()


def opened_with(seed_index: Path, embedder: Embedder, reranker: Path) -> Searcher:
    """A searcher whose reranker is named the way PARACITE_RERANKER names it."""
    settings = Settings(reranker=str(reranker))
    assert settings.reranker is not None
    return Searcher.open(seed_index, embedder, reranker=load_cross_encoder(settings.reranker))


def keys(searcher: Searcher, k: int) -> list[tuple[str, int, int]]:
    hits = searcher.search(QUESTION, k).hits
    return [(h.passage.doc_id, h.passage.paragraph, h.passage.window) for h in hits]


def test_the_cross_encoders_scores_decide_the_order_of_the_best_passages(
    seed_index: Path, embedder: Embedder, plain: Searcher, rerankers: tuple[Path, Path]
) -> None:
    fused = plain.search(QUESTION, RERANK_DEPTH).hits
    model = load_cross_encoder(str(rerankers[0]))
    scores = model.predict(
        [(QUESTION, f"{h.passage.title}\n{h.passage.text}") for h in fused],
        batch_size=len(fused),
        show_progress_bar=False,
    )
    by_model = [
        (h.passage.doc_id, h.passage.paragraph, h.passage.window)
        for _, h in sorted(zip(scores, fused, strict=True), key=lambda pair: -float(pair[0]))
    ]
    fused_order = [(h.passage.doc_id, h.passage.paragraph, h.passage.window) for h in fused]
    assert by_model != fused_order  # the test means something: the model disagrees

    reranking = opened_with(seed_index, embedder, rerankers[0])
    reversing = opened_with(seed_index, embedder, rerankers[1])
    try:
        assert keys(reranking, RERANK_DEPTH) == by_model
        # The same model with its scores negated puts them the other way round, but for
        # near ties: its outputs pass a sigmoid, and (say) 1 - 0.13577689 and 1 - 0.13577679 are
        # one float32. Its own scores decide its order (equal ones keep the fused order).
        negated = load_cross_encoder(str(rerankers[1])).predict(
            [(QUESTION, f"{h.passage.title}\n{h.passage.text}") for h in fused],
            batch_size=len(fused),
            show_progress_bar=False,
        )
        by_negated_model = [
            (h.passage.doc_id, h.passage.paragraph, h.passage.window)
            for _, h in sorted(zip(negated, fused, strict=True), key=lambda pair: -float(pair[0]))
        ]
        assert by_negated_model[:5] == by_model[::-1][:5]
        assert keys(reversing, RERANK_DEPTH) == by_negated_model
        assert keys(reranking, 5) == by_model[:5]
        # The fused scores stay on their scale, best first, whoever holds them.
        reranked = reranking.search(QUESTION, RERANK_DEPTH).hits
        assert [h.score for h in reranked] == [h.score for h in fused]
        # The answer is chosen among the reranked passages.
        answer = reranking.ask(QUESTION, 5).answer
        if answer is not None:
            assert (answer.doc_id, answer.paragraph) in [key[:2] for key in by_model[:5]]
    finally:
        reranking.close()
        reversing.close()


def test_the_depth_bounds_what_the_reranker_reorders(
    seed_index: Path, embedder: Embedder, plain: Searcher, rerankers: tuple[Path, Path]
) -> None:
    fused = keys(plain, 10)
    shallow = Searcher.open(
        seed_index, embedder, reranker=load_cross_encoder(str(rerankers[1])), reranker_depth=4
    )
    try:
        reordered = keys(shallow, 10)
    finally:
        shallow.close()
    assert sorted(reordered[:4]) == sorted(fused[:4])
    assert reordered[4:] == fused[4:]


def test_no_reranker_by_default(plain: Searcher) -> None:
    assert Settings().reranker is None
    assert plain.reranker is None


def test_a_reranker_that_cannot_be_loaded_is_a_model_error(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(ModelUnavailable, match="cannot load the reranker"):
        load_cross_encoder(str(empty))


def run_cli(*args: str, reranker: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400", "PARACITE_RERANKER": str(reranker)}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_the_cli_reranks_with_paracite_reranker(
    seed_index: Path, embedder: Embedder, rerankers: tuple[Path, Path], tmp_path: Path
) -> None:
    result = run_cli(
        "search", QUESTION, "--index", str(seed_index), "--json", "-k", "5", reranker=rerankers[1]
    )
    assert result.returncode == 0, result.stderr
    shown = [(p["doc_id"], p["paragraph"]) for p in json.loads(result.stdout)["passages"]]
    reversing = opened_with(seed_index, embedder, rerankers[1])
    try:
        assert shown == [key[:2] for key in keys(reversing, 5)]
    finally:
        reversing.close()

    for bad in (tmp_path / "none", tmp_path):  # no such folder; a folder with no model
        failed = run_cli("ask", QUESTION, "--index", str(seed_index), reranker=bad)
        assert failed.returncode == 1
        assert failed.stderr.startswith("error: cannot load the reranker")
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
