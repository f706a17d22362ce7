"""Names made from model names: the embedding cache's file, ONNX export and eval folders."""

from __future__ import annotations

from pathlib import Path

from indexer.embedding import Embedder
from indexer.embedding_cache import cache_file
from indexer.evaluation import EvalSet, workspace_for
from indexer.settings import DEFAULT_MODEL, Settings
from indexer.text import slug


def test_slug_keeps_safe_characters_and_the_end_of_long_names() -> None:
    assert slug("all-MiniLM-L6-v2", 80) == "all-MiniLM-L6-v2"
    assert slug("sentence-transformers/all-MiniLM-L6-v2", 80) == (
        "sentence-transformers_all-MiniLM-L6-v2"
    )
    assert slug("/srv/my models/e5 (v2)+x", 80) == "_srv_my_models_e5__v2__x"
    assert slug("Modèle_ünicode.1", 80) == "Modèle_ünicode.1"
    assert slug("a/" + "b" * 100, 60) == "b" * 60


def test_the_embedding_cache_file_is_the_one_indexes_already_have(
    seed_index: Path, embedder: Embedder
) -> None:
    path = cache_file(Path("idx"), "sentence-transformers/all-MiniLM-L6-v2", "onnx-int8")
    assert path == Path("idx/cache/sentence-transformers_all-MiniLM-L6-v2-onnx-int8.sqlite")
    assert cache_file(seed_index, DEFAULT_MODEL, embedder.backend).is_file()
    assert len(cache_file(Path("."), "m" * 200, "torch").name) == 80 + len("-torch.sqlite")


def test_eval_workspaces_are_named_by_set_model_and_backend(tmp_path: Path) -> None:
    source = tmp_path / "squad.json"
    eval_set = EvalSet("squad", "squad", source, "paragraph", [], [])
    settings = Settings(model="sentence-transformers/all-MiniLM-L6-v2", backend="onnx")
    folder = workspace_for(eval_set, settings, tmp_path)
    assert folder.parent == tmp_path
    assert folder.name.startswith("squad-")
    assert folder.name.endswith("-sentence-transformers_all-MiniLM-L6-v2-onnx")
