"""Hub model names: the local hub cache first, and a fast, clear error when the hub is out of
reach (instead of a minute of the hub client's retries)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from indexer import hub
from indexer.embedding import load_embedder
from indexer.errors import ModelUnavailable
from indexer.hub import locate_hub_model
from indexer.search.rerank import load_cross_encoder


def cached_model(cache: Path, repo_id: str) -> Path:
    """A model as huggingface_hub's cache lays it out: a snapshot named by refs/main."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = root / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}", encoding="utf-8")
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("0123abcd", encoding="utf-8")
    return snapshot


@pytest.fixture
def hub_unreachable(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hub cannot be reached (and nothing else may open a connection); the list records
    every probe."""
    probes: list[str] = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def refuse(address: tuple[str, int], timeout: float) -> socket.socket:
        probes.append(address[0])
        raise OSError("Name or service not known")

    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    return probes


def test_a_cached_hub_model_is_its_folder_without_asking_the_network(
    tmp_path: Path, hub_unreachable: list[str]
) -> None:
    snapshot = cached_model(tmp_path, "acme/tiny-model")
    assert Path(locate_hub_model("acme/tiny-model", tmp_path)) == snapshot
    # A bare name is a sentence-transformers model, as sentence-transformers reads it.
    bare = cached_model(tmp_path, "sentence-transformers/tiny-bare")
    assert Path(locate_hub_model("tiny-bare", tmp_path)) == bare
    assert hub_unreachable == []


def test_an_uncached_model_fails_at_once_when_the_hub_is_out_of_reach(
    tmp_path: Path, hub_unreachable: list[str]
) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        locate_hub_model("acme/not-here", tmp_path)
    message = str(caught.value)
    assert "cannot be reached" in message and "hf download acme/not-here" in message
    with pytest.raises(ModelUnavailable, match="hf download sentence-transformers/not-here-either"):
        locate_hub_model("not-here-either", tmp_path)
    assert hub_unreachable == ["huggingface.co", "huggingface.co"]


def test_an_uncached_model_with_the_hub_switched_off_fails_without_a_probe(
    tmp_path: Path, hub_unreachable: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE"):
        locate_hub_model("acme/not-here", tmp_path)
    assert hub_unreachable == []


def test_a_reachable_hub_leaves_the_name_to_the_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    assert locate_hub_model("acme/not-here", tmp_path) == "acme/not-here"


def test_a_missing_folder_is_not_looked_up_on_the_hub(
    tmp_path: Path, hub_unreachable: list[str]
) -> None:
    for name in (str(tmp_path / "nothing"), "./models/nothing", "~/nothing/here"):
        with pytest.raises(ModelUnavailable, match="no such folder"):
            locate_hub_model(name, tmp_path)
    assert hub_unreachable == []


def test_the_embedder_and_the_reranker_name_the_model_and_the_reason(
    hub_unreachable: list[str],
) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        load_embedder("acme/no-such-model-for-paracite", "onnx-int8")
    message = str(caught.value)
    assert message.startswith("cannot load embedding model 'acme/no-such-model-for-paracite'")
    assert "(onnx-int8)" in message and "cannot be reached" in message
    with pytest.raises(ModelUnavailable, match="cannot load the reranker 'acme/no-reranker'"):
        load_cross_encoder("acme/no-reranker")


def test_paracite_index_with_a_mistyped_model_says_so_in_one_line(
    tmp_path: Path, seeds_copy: Path
) -> None:
    """The real probe, in a subprocess: on a machine without internet the hub's host does not
    resolve; where it does resolve, the model is still not there. Either way one line."""
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "index",
            str(seeds_copy),
            "--index",
            str(tmp_path / "idx"),
            "--model",
            "paracite-test/all-MiniLM-L6-v3-typo",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")},
    )
    assert failed.returncode != 0
    assert "paracite-test/all-MiniLM-L6-v3-typo" in failed.stderr
    assert "Retrying" not in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
