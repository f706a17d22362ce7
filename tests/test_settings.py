"""Every setting is documented in the README, with its environment variable and default."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from indexer import retrieval
from indexer.build import build_index
from indexer.embedding import BACKENDS, Embedder
from indexer.errors import ModelMismatch
from indexer.evaluation import default_cache_dir
from indexer.models import NOT_ANSWERED_MESSAGE
from indexer.onnx_export import cache_root
from indexer.retrieval import Searcher
from indexer.settings import Settings
from indexer.store import read_stats
from server import app as app_module
from server import serving
from server.app import create_app
from server.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme_table() -> None:
    for name in Settings.model_fields:
        assert f"`PARACITE_{name.upper()}`" in README, name


def test_environment_overrides_and_origins_split(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PARACITE_PORT", "9123")
    monkeypatch.setenv("PARACITE_CORS_ORIGINS", "http://a.example, http://b.example")
    settings = Settings()
    assert settings.port == 9123
    assert settings.cors_origins == ["http://a.example", "http://b.example"]
    assert settings.with_overrides(port=None, host="0.0.0.0").port == 9123


# -- what each setting changes (one test per row of the README's Settings table) ----------------

SENTENCE = "The lighthouse keeper lit the lamp at dusk and watched the ships pass the rocks. "


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set PARACITE_<NAME> variables for one test."""

    def set_env(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"PARACITE_{name.upper()}", str(value))

    return set_env


@pytest.fixture
def cli_embedder(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> Embedder:
    """The CLI opens indexes with the session's model instead of loading it again."""
    monkeypatch.setattr(retrieval, "load_embedder", lambda *args, **kwargs: embedder)
    return embedder


def _index_copy(seed_index: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(seed_index, copy, ignore=shutil.ignore_patterns("lock"))
    return copy


def _write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def test_index_setting_picks_the_index(seed_index: Path, env: Callable[..., None]) -> None:
    env(index=seed_index)
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["documents"] == 2


def test_model_setting_is_the_model_an_index_is_built_with(
    seed_index: Path, seeds_copy: Path, tmp_path: Path, env: Callable[..., None]
) -> None:
    copy = _index_copy(seed_index, tmp_path)
    env(model="x/other-model")
    with pytest.raises(ModelMismatch, match="'x/other-model'"):
        build_index(seeds_copy, Settings(index=copy))


def test_cache_dir_setting_holds_the_onnx_exports_and_eval_indexes(
    export_cache: Path, embedder: Embedder, tmp_path: Path, env: Callable[..., None]
) -> None:
    # The session's embedder was exported into PARACITE_CACHE_DIR, set by the export_cache fixture.
    if embedder.backend != "torch":
        assert any((export_cache / "onnx").iterdir())
    env(cache_dir=tmp_path / "elsewhere")
    assert cache_root(Settings().cache_dir) == tmp_path / "elsewhere"
    assert default_cache_dir() == tmp_path / "elsewhere" / "eval"


def test_cache_dir_defaults_under_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARACITE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert Settings().cache_dir == tmp_path / "paracite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert Settings().cache_dir == Path.home() / ".cache" / "paracite"


def test_backend_setting_is_the_backend_an_index_is_built_with(
    seed_index: Path, seeds_copy: Path, tmp_path: Path, env: Callable[..., None]
) -> None:
    copy = _index_copy(seed_index, tmp_path)
    built_with = read_stats(copy).backend
    other = next(backend for backend in BACKENDS if backend != built_with)
    env(backend=other)
    with pytest.raises(ModelMismatch, match=rf"\({other}\)"):
        build_index(seeds_copy, Settings(index=copy))


def test_sentence_vectors_setting_is_recorded_and_sets_the_threshold(
    embedder: Embedder, tmp_path: Path, env: Callable[..., None]
) -> None:
    _write(tmp_path / "docs", "a.txt", SENTENCE * 3)
    env(sentence_vectors="in-context")
    build_index(tmp_path / "docs", Settings(index=tmp_path / "index"), embedder=embedder)
    assert read_stats(tmp_path / "index").sentence_vectors == "in-context"
    in_context = Searcher.open(tmp_path / "index", embedder)
    standalone_index = tmp_path / "standalone"
    env(sentence_vectors="standalone")
    build_index(tmp_path / "docs", Settings(index=standalone_index), embedder=embedder)
    standalone = Searcher.open(standalone_index, embedder)
    assert in_context.answer_threshold < standalone.answer_threshold


def test_batch_size_setting_is_how_many_texts_go_to_the_model_at_once(
    embedder: Embedder, tmp_path: Path, env: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    encode = embedder.encoder.encode

    def recording_encode(
        texts: list[str], batch_size: int, on_progress: object = None
    ) -> np.ndarray:
        sizes.append(batch_size)
        return encode(texts, batch_size)

    monkeypatch.setattr(embedder.encoder, "encode", recording_encode)
    _write(tmp_path / "docs", "a.txt", "\n\n".join(f"Paragraph {i}. {SENTENCE}" for i in range(5)))
    env(batch_size=3)
    build_index(tmp_path / "docs", Settings(index=tmp_path / "index"), embedder=embedder)
    assert sizes and set(sizes) == {3}


def test_max_file_mb_setting_skips_larger_files(
    embedder: Embedder, tmp_path: Path, env: Callable[..., None]
) -> None:
    _write(tmp_path / "docs", "small.txt", SENTENCE)
    _write(tmp_path / "docs", "large.txt", SENTENCE * 40)  # about 3.3 kB
    env(max_file_mb=0.002)  # about 2.1 kB
    report = build_index(tmp_path / "docs", Settings(index=tmp_path / "index"), embedder=embedder)
    by_path = {file.path: file for file in report.files}
    assert by_path["small.txt"].status == "added"
    assert by_path["large.txt"].status == "skipped" and "MB" in by_path["large.txt"].reason


@pytest.mark.parametrize("overlap", [0, 2])
def test_window_overlap_setting_is_the_sentences_consecutive_windows_share(
    embedder: Embedder, tmp_path: Path, env: Callable[..., None], overlap: int
) -> None:
    sentences = [f"Sentence number {i} says that {SENTENCE.strip()}" for i in range(40)]
    _write(tmp_path / "docs", "long.txt", " ".join(sentences))
    env(window_overlap=overlap)
    build_index(tmp_path / "docs", Settings(index=tmp_path / "index"), embedder=embedder)
    assert read_stats(tmp_path / "index").chunking["overlap"] == overlap
    searcher = Searcher.open(tmp_path / "index", embedder)
    windows = [hit.passage for hit in searcher.search("lighthouse keeper", k=50).hits]
    windows.sort(key=lambda passage: passage.char_start)
    assert len(windows) >= 2
    for before, after in itertools.pairwise(windows):
        shared = [s.text for s in before.sentences if s.text in {t.text for t in after.sentences}]
        assert len(shared) == overlap


def test_answer_threshold_setting_decides_when_nothing_answers(
    seed_index: Path, searcher: Searcher, cli_embedder: Embedder, env: Callable[..., None]
) -> None:
    question = ["ask", "Why does Kim Jong Un distrust the United States?", "--json"]
    env(index=seed_index)
    assert json.loads(CliRunner().invoke(main, question).output)["answer"] is not None
    env(answer_threshold=0.99)
    assert json.loads(CliRunner().invoke(main, question).output)["answer"] is None
    with TestClient(create_app(Settings())) as client:  # the server reads it as well
        response = client.get("/api/ask", params={"q": question[1]}).json()
        assert response["answer"] is None and response["no_answer_reason"]


def test_answer_confidence_setting_decides_when_the_documents_do_not_answer(
    seed_index: Path, cli_embedder: Embedder, env: Callable[..., None]
) -> None:
    question = ["ask", "Why does Kim Jong Un distrust the United States?", "--json"]
    env(index=seed_index)
    assert json.loads(CliRunner().invoke(main, question).output)["answer"] is not None
    env(answer_confidence=0.9999)  # only a byline (confidence 1) could pass
    assert json.loads(CliRunner().invoke(main, question).output)["answer"] is None
    with TestClient(create_app(Settings())) as client:  # the server reads it as well
        response = client.get("/api/ask", params={"q": question[1]}).json()
        assert response["answer"] is None
        assert response["no_answer_reason"] == NOT_ANSWERED_MESSAGE


def test_host_and_port_settings_are_where_serve_listens(
    seed_index: Path, env: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Bound(Exception):
        """Stops `serve` once it has bound its socket (the test needs no running server)."""

    class NoIndex:
        def close(self) -> None:
            pass

    bound: list[tuple[str, int]] = []

    def record(host: str, port: int) -> None:
        bound.append((host, port))
        raise Bound

    monkeypatch.setattr(serving, "listen", record)
    monkeypatch.setattr(app_module, "open_live_index", lambda settings: NoIndex())
    env(index=seed_index, host="127.0.0.2", port=9123)
    assert isinstance(CliRunner().invoke(main, ["serve"]).exception, Bound)
    assert isinstance(CliRunner().invoke(main, ["serve", "--port", "9124"]).exception, Bound)
    assert bound == [("127.0.0.2", 9123), ("127.0.0.2", 9124)]  # an option wins over the setting


def test_cors_origins_setting_is_which_sites_may_call_the_api(
    seed_index: Path, searcher: Searcher, env: Callable[..., None]
) -> None:
    env(cors_origins="https://a.example")
    with TestClient(create_app(Settings(index=seed_index), searcher)) as client:
        for origin, allowed in (("https://a.example", True), ("https://b.example", False)):
            response = client.get("/healthz", headers={"Origin": origin})
            assert ("access-control-allow-origin" in response.headers) is allowed
