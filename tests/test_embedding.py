"""Embedding backends: the bundled model offline, torch/ONNX/int8 agreement, the export cache."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from cache_helpers import fresh_cache_dir

from indexer import embedding, encoders, onnx_export
from indexer.embedding import Embedder, load_embedder
from indexer.embedding_cache import EmbeddingCache
from indexer.encoders import Span
from indexer.errors import ModelUnavailable
from indexer.onnx_export import ONNX_FP32
from indexer.settings import DEFAULT_MODEL

SENTENCES = [
    "How many people live in Paris?",
    "The cat sat on the mat.",
    "A",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The treaty was signed in 1648, ending the Thirty Years' War in the Holy Roman Empire.",
    "Insulin resistance is associated with obesity, type 2 diabetes and cardiovascular disease, "
    "although the mechanisms linking them remain debated.",
    "What is the capital of France?",
    "Neural networks learn representations from data by adjusting weights with gradient descent.",
]


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to look up a host or open a connection fails the test, and the hub is offline.

    huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported: set here after an
    earlier test imported it, the variable alone left the hub online, and a lookup of an
    unknown model name could sit for minutes in its retries (DNS failing slowly, or not).
    """
    import huggingface_hub.constants

    def refuse(self: socket.socket, address: object) -> None:
        raise NetworkUsed(f"tried to connect to {address!r}")

    def refuse_lookup(host: object, *args: object, **kwargs: object) -> None:
        raise NetworkUsed(f"tried to look up {host!r}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh export cache: the ONNX export and its int8 variant are made in this run."""
    yield from fresh_cache_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def onnx_embedders(cache_dir: Path) -> dict[str, Embedder]:
    """Both ONNX backends, exported from the bundled model's files with the network refused."""

    def refuse(self: socket.socket, address: object) -> None:
        raise NetworkUsed(f"tried to connect to {address!r}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", refuse)
        return {backend: load_embedder(DEFAULT_MODEL, backend) for backend in ("onnx", "onnx-int8")}


def _export_folder(cache_dir: Path) -> Path:
    folders = [path for path in (cache_dir / "onnx").iterdir() if path.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def _meta_of(encoder: encoders.OnnxEncoder) -> dict[str, object]:
    return dict(json.loads((encoder.folder / onnx_export.ONNX_META).read_text(encoding="utf-8")))


def _copy_export(made: Path, folder: Path) -> None:
    """What exporting into `folder` leaves there, copied from the export made before."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (ONNX_FP32, encoders.ONNX_TOKENIZER, onnx_export.ONNX_META):
        (folder / name).write_bytes((made / name).read_bytes())


def test_bundled_model_loads_offline(no_network: None) -> None:
    loaded = load_embedder(DEFAULT_MODEL, "torch")
    vector = loaded.embed_query("Where is the bundled model?")
    assert vector.shape == (384,)
    assert vector.dtype == np.float32
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4


def test_onnx_backends_load_offline_and_describe_the_model(
    onnx_embedders: dict[str, Embedder], embedder: Embedder
) -> None:
    for backend, loaded in onnx_embedders.items():
        assert (loaded.model_name, loaded.backend) == (DEFAULT_MODEL, backend)
        assert loaded.dimension == embedder.dimension == 384
        assert loaded.max_tokens == embedder.max_tokens
        assert loaded.count_tokens(SENTENCES) == embedder.count_tokens(SENTENCES)
        assert loaded.count_tokens([]) == []
        assert loaded.embed([]).shape == (0, 384)


def test_backends_agree_with_torch(
    onnx_embedders: dict[str, Embedder], torch_embedder: Embedder
) -> None:
    reference = torch_embedder.embed(SENTENCES)
    thresholds = {"onnx": 0.99, "onnx-int8": 0.97}
    for backend, loaded in onnx_embedders.items():
        vectors = loaded.embed(SENTENCES, batch_size=4)
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        cosines = (vectors * reference).sum(axis=1)
        assert cosines.min() > thresholds[backend], (backend, cosines)
        query = loaded.embed_query(SENTENCES[0])
        assert float(query @ reference[0]) > thresholds[backend]
    plain = onnx_embedders["onnx"].embed(SENTENCES)
    assert (plain * reference).sum(axis=1).min() > 0.9999


def test_onnx_keeps_the_ranking(
    onnx_embedders: dict[str, Embedder], torch_embedder: Embedder
) -> None:
    passages = SENTENCES[3:]
    question = "Which process turns sunlight into sugar?"
    reference = torch_embedder.embed(passages) @ torch_embedder.embed_query(question)
    expected = int(np.argmax(reference))
    for loaded in onnx_embedders.values():
        assert int(np.argmax(loaded.embed(passages) @ loaded.embed_query(question))) == expected


def test_export_is_cached_and_reused(
    onnx_embedders: dict[str, Embedder], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _export_folder(cache_dir)
    models = sorted(folder.glob("*.onnx"))
    assert [path.name for path in models][0] == ONNX_FP32
    assert len(models) == 2  # the fp32 export and its int8 variant for this CPU
    before = {path: path.stat().st_mtime_ns for path in folder.iterdir()}

    def export_again(*args: object) -> None:
        raise AssertionError("the cached export was made again")

    monkeypatch.setattr(onnx_export, "_export_onnx", export_again)
    monkeypatch.setattr(onnx_export, "_quantize", export_again)
    for backend in ("onnx", "onnx-int8"):
        again = load_embedder(DEFAULT_MODEL, backend)
        np.testing.assert_allclose(
            again.embed(SENTENCES[:3]), onnx_embedders[backend].embed(SENTENCES[:3]), atol=1e-6
        )
    assert {path: path.stat().st_mtime_ns for path in folder.iterdir()} == before
    assert not list(folder.glob(".*tmp"))


def test_query_embedder_runs_on_one_thread_with_the_same_vectors(
    onnx_embedders: dict[str, Embedder],
) -> None:
    for backend in ("onnx", "onnx-int8"):
        batch = onnx_embedders[backend]
        queries = load_embedder(DEFAULT_MODEL, backend, for_queries=True)
        assert isinstance(queries.encoder, encoders.OnnxEncoder)
        assert isinstance(batch.encoder, encoders.OnnxEncoder)
        assert queries.encoder.sessions.copies == 1
        (query_session,) = queries.encoder.sessions.sessions
        assert query_session.get_session_options().intra_op_num_threads == 1
        # Indexing runs one one-core copy of the graph per usable core (up to a limit).
        copies = min(encoders.usable_cores(), encoders.MOST_GRAPH_COPIES)
        assert batch.encoder.sessions.copies == copies
        batch.embed(SENTENCES * 8)
        assert len(batch.encoder.sessions.sessions) == copies
        for session in batch.encoder.sessions.sessions:
            threads = session.get_session_options().intra_op_num_threads
            assert threads == (encoders.usable_cores() // copies if copies > 1 else 0)
        np.testing.assert_allclose(
            queries.embed_query(SENTENCES[0]), batch.embed_query(SENTENCES[0]), atol=1e-5
        )


def test_concurrent_loads_export_once(
    onnx_embedders: dict[str, Embedder],
    cache_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loader that finds an export under way waits for it and then reuses it.

    The first export is held until the second loader has asked for the export lock, so the
    two always overlap, however fast the machine.
    """
    made = _export_folder(cache_dir)
    monkeypatch.setenv("PARACITE_CACHE_DIR", str(tmp_path))
    exporting, second_waits, finish = threading.Event(), threading.Event(), threading.Event()
    calls: list[Path] = []
    real_lock = onnx_export._export_lock

    def held_copy(location: str, folder: Path) -> None:
        calls.append(folder)
        exporting.set()
        assert finish.wait(120)
        _copy_export(made, folder)

    @contextlib.contextmanager
    def watched_lock(folder: Path) -> Iterator[None]:
        if threading.current_thread().name == "second":
            second_waits.set()
        with real_lock(folder):
            yield

    monkeypatch.setattr(onnx_export, "_export_onnx", held_copy)
    monkeypatch.setattr(onnx_export, "_export_lock", watched_lock)
    loaded: dict[str, Embedder] = {}

    def load() -> None:
        loaded[threading.current_thread().name] = load_embedder(DEFAULT_MODEL, "onnx")

    threads = [threading.Thread(target=load, name=name) for name in ("first", "second")]
    threads[0].start()
    assert exporting.wait(120), "the first loader never started exporting"
    threads[1].start()
    assert second_waits.wait(120), "the second loader did not ask for the export lock"
    assert not loaded  # the first is still exporting, so the second cannot have loaded
    finish.set()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive()
    assert len(calls) == 1
    assert set(loaded) == {"first", "second"}
    for loader in loaded.values():
        assert isinstance(loader.encoder, encoders.OnnxEncoder)
        assert loader.encoder.folder == calls[0]
    np.testing.assert_allclose(
        loaded["second"].embed(SENTENCES[:2]), loaded["first"].embed(SENTENCES[:2]), atol=1e-6
    )


def test_exports_go_to_the_cache_dir_the_caller_gives(
    onnx_embedders: dict[str, Embedder],
    cache_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`cache_dir` wins over PARACITE_CACHE_DIR: the caller's settings say where exports go."""
    made = _export_folder(cache_dir)
    given, from_env = tmp_path / "given", tmp_path / "from-env"
    monkeypatch.setenv("PARACITE_CACHE_DIR", str(from_env))
    monkeypatch.setattr(onnx_export, "_export_onnx", lambda _, folder: _copy_export(made, folder))
    loaded = load_embedder(DEFAULT_MODEL, "onnx", cache_dir=given)
    assert isinstance(loaded.encoder, encoders.OnnxEncoder)
    assert loaded.encoder.folder.parent == given / "onnx"
    assert not from_env.exists()
    assert onnx_export.cache_root(Path("~/models")) == Path.home() / "models"


def test_bad_model_name_is_one_line_error(no_network: None) -> None:
    for backend in ("torch", "onnx", "onnx-int8"):
        with pytest.raises(ModelUnavailable) as caught:
            load_embedder("no-such-model-for-paracite", backend)
        message = str(caught.value)
        assert "no-such-model-for-paracite" in message
        assert backend in message
        assert "\n" not in message


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ModelUnavailable, match="unknown embedding backend 'tensorrt'"):
        load_embedder(DEFAULT_MODEL, "tensorrt")


def test_unwritable_cache_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("PARACITE_CACHE_DIR", str(blocker))
    with pytest.raises(ModelUnavailable, match="PARACITE_CACHE_DIR"):
        load_embedder(DEFAULT_MODEL, "onnx")


class _RecordingEncoder:
    """Vectors that say which text they came from; remembers each chunk it was given."""

    dimension = 2
    max_tokens = 16

    def __init__(self) -> None:
        self.chunks: list[list[str]] = []

    def encode(
        self, texts: list[str], batch_size: int, on_progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        self.chunks.append(texts)
        if on_progress:
            on_progress(len(texts))
        return np.array([[len(text), 1.0] for text in texts], dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(text.split()) for text in texts]


def test_embedding_batches_texts_of_similar_length_and_keeps_the_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoder = _RecordingEncoder()
    embedder = Embedder("fake", "onnx", encoder)
    texts = ["a", "a much longer sentence here", "medium text", "bb"]
    progress: list[int] = []
    vectors = embedder.embed(texts, on_progress=progress.append)
    # One stream, longest first; the encoder cuts it into runs and reports their progress.
    assert encoder.chunks == [["a much longer sentence here", "medium text", "bb", "a"]]
    assert vectors[:, 0].tolist() == [float(len(text)) for text in texts]
    assert progress == [4]


def test_quantizing_leaves_the_program_logging_alone(
    onnx_embedders: dict[str, Embedder], tmp_path: Path
) -> None:
    """onnxruntime.quantization configures the root logger on import; that must not stick,
    or every library's debug records end up in `paracite index` output."""
    script = (
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from indexer.onnx_export import _quantize\n"
        "_quantize(Path(sys.argv[1]), Path(sys.argv[2]), 'avx2')\n"
        "chatty = logging.getLogger('bm25s')\n"
        "chatty.setLevel(logging.DEBUG)\n"
        "chatty.debug('a library debug record')\n"
        "print(len(logging.getLogger().handlers), logging.getLogger().level)\n"
    )
    exported = onnx_embedders["onnx"].encoder
    assert isinstance(exported, encoders.OnnxEncoder)
    source = exported.folder / ONNX_FP32
    target = tmp_path / "model_int8.onnx"
    done = subprocess.run(
        [sys.executable, "-c", script, str(source), str(target)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["0", str(logging.WARNING)]
    assert "a library debug record" not in done.stderr
    assert target.stat().st_size > 0


PASSAGE = (
    "Marie Curie was born in Warsaw in 1867. She moved to Paris to study physics. "
    "There she discovered polonium and radium with her husband."
)
PASSAGE_SPANS = [(0, 38), (39, 75), (76, len(PASSAGE))]


def test_span_pooling_averages_the_tokens_inside_each_span() -> None:
    tokens = np.array([[9.0, 9.0], [1.0, 0.0], [3.0, 4.0], [0.0, 2.0], [9.0, 9.0]])
    offsets = np.array([[0, 0], [0, 3], [4, 8], [9, 12], [0, 0]])  # [CLS] w w w [SEP]
    pooled = encoders.pool_spans(tokens, offsets, [(0, 8), (9, 12), (13, 20)], 2)
    np.testing.assert_allclose(pooled[0], np.array([4.0, 4.0]) / np.hypot(4.0, 4.0))
    np.testing.assert_allclose(pooled[1], [0.0, 1.0])
    assert np.isnan(pooled[2]).all()  # past the last token kept: to be embedded on its own


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_sentences_are_read_in_the_context_of_their_passage(
    backend: str, onnx_embedders: dict[str, Embedder], torch_embedder: Embedder
) -> None:
    loaded = torch_embedder if backend == "torch" else onnx_embedders[backend]
    assert loaded.encoder.pools_spans
    vectors, spans = loaded.embed_with_spans([PASSAGE], [PASSAGE_SPANS], in_context=True)
    np.testing.assert_allclose(vectors[0], loaded.embed([PASSAGE])[0], atol=2e-3)
    alone = loaded.embed([PASSAGE[a:b] for a, b in PASSAGE_SPANS])
    _, by_default = loaded.embed_with_spans([PASSAGE], [PASSAGE_SPANS])
    np.testing.assert_allclose(by_default[0], alone, atol=1e-5)
    in_context = spans[0]
    assert np.allclose(np.linalg.norm(in_context, axis=1), 1.0, atol=1e-5)
    # Close to the sentence alone, but not the same: "She" and "There" now know who and where.
    similarity = (in_context * alone).sum(axis=1)
    assert (similarity > 0.5).all() and (similarity < 0.99).all(), similarity
    question = loaded.embed_query("Where did Marie Curie discover radium?")
    assert float(in_context[2] @ question) > float(alone[2] @ question)
    if backend != "torch":
        _, reference = torch_embedder.embed_with_spans([PASSAGE], [PASSAGE_SPANS], in_context=True)
        assert ((in_context * reference[0]).sum(axis=1) > 0.97).all()


def test_spans_the_tokenizer_cut_off_are_embedded_on_their_own(torch_embedder: Embedder) -> None:
    filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40
    text = filler + "The last sentence is far past the token limit."
    tail = (len(filler), len(text))
    progress: list[int] = []
    _, spans = torch_embedder.embed_with_spans(
        [text], [[(0, 26), tail]], on_progress=progress.append, in_context=True
    )
    alone = torch_embedder.embed([text[slice(*tail)], text[:26]])
    np.testing.assert_allclose(spans[0][1], alone[0], atol=1e-5)
    assert float(spans[0][0] @ alone[1]) < 0.99  # the first sentence still came in context
    assert sum(progress) == 3


class _MeanOfWordsEncoder:
    """A model that does not mean-pool tokens: every span is embedded on its own."""

    dimension = 2
    max_tokens = 256
    pools_spans = False

    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(
        self, texts: list[str], batch_size: int, on_progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        self.texts.extend(texts)
        if on_progress:
            on_progress(len(texts))
        return np.array([[len(text), 1.0] for text in texts], dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(text.split()) for text in texts]


def test_the_embedder_says_whether_it_reads_sentences_in_context(
    torch_embedder: Embedder,
) -> None:
    assert torch_embedder.pools_in_context
    assert torch_embedder.sentence_mode("in-context") == "in-context"
    assert torch_embedder.sentence_mode("standalone") == "standalone"
    other = Embedder("fake", "onnx", _MeanOfWordsEncoder())  # type: ignore[arg-type]
    assert not other.pools_in_context
    assert other.sentence_mode("in-context") == "standalone"


def test_passage_windows_leave_room_for_the_special_tokens(torch_embedder: Embedder) -> None:
    assert torch_embedder.window_tokens == torch_embedder.max_tokens - 2 == 254
    tiny = _MeanOfWordsEncoder()
    tiny.max_tokens = 8
    assert Embedder("fake", "onnx", tiny).window_tokens == 16  # type: ignore[arg-type]


def test_models_that_pool_otherwise_embed_each_sentence_alone(tmp_path: Path) -> None:
    encoder = _MeanOfWordsEncoder()
    embedder = Embedder("fake", "onnx", encoder)  # type: ignore[arg-type]
    cache = EmbeddingCache(tmp_path / "cache.sqlite", 2)
    texts = ["one two. three", "four five six."]
    spans = [[(0, 8), (9, 14)], [(0, 14)]]
    progress: list[int] = []
    vectors, sentences, embedded, _ = embedding.embed_cached(
        embedder, cache, texts, spans, 8, progress.append, in_context=True
    )
    assert vectors[:, 0].tolist() == [14.0, 14.0]
    assert sentences[:, 0].tolist() == [8.0, 5.0, 14.0]
    assert embedded == 4 and sum(progress) == 5  # "four five six." is one text, embedded once
    assert set(encoder.texts) == {"one two. three", "four five six.", "one two.", "three"}


def test_cache_keys_a_sentence_by_its_passage(tmp_path: Path, torch_embedder: Embedder) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite", torch_embedder.dimension)
    shared = "It was founded in 1850."
    texts = [f"Harvard is a university. {shared}", f"Acme makes anvils. {shared}"]
    spans = [[(25, len(texts[0]))], [(19, len(texts[1]))]]
    _, sentences, embedded, _ = embedding.embed_cached(
        torch_embedder, cache, texts, spans, 8, in_context=True
    )
    assert embedded == 4
    assert float(sentences[0] @ sentences[1]) < 0.99  # "It" differs between the two passages
    _, again, embedded, _ = embedding.embed_cached(
        torch_embedder, cache, texts, spans, 8, in_context=True
    )
    assert embedded == 0
    np.testing.assert_allclose(again, sentences, atol=1e-6)
    _, alone, embedded, _ = embedding.embed_cached(torch_embedder, cache, texts, spans, 8)
    assert embedded == 1  # standalone, the shared sentence is one text, embedded once
    np.testing.assert_allclose(alone[0], alone[1])
    cache.close()


class _FakeSentenceTransformer:
    """Stands in for sentence-transformers' class: remembers where it was put."""

    def __init__(self, location: str, device: str, **kwargs: object) -> None:
        self.device = device
        self.halved = False

    def half(self) -> _FakeSentenceTransformer:
        self.halved = True
        return self


@pytest.mark.parametrize(("gpu", "device", "halved"), [(True, "cuda", True), (False, "cpu", False)])
def test_the_torch_backend_runs_on_a_gpu_in_float16_when_there_is_one(
    monkeypatch: pytest.MonkeyPatch, gpu: bool, device: str, halved: bool
) -> None:
    """No GPU here: the probe is replaced, and so is the model class (a real model cannot
    move to a device that does not exist)."""
    import sentence_transformers

    monkeypatch.setattr(encoders, "cuda_available", lambda: gpu)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", _FakeSentenceTransformer)
    assert encoders.torch_device() == device
    model = encoders.load_sentence_transformer("somewhere", encoders.torch_device())
    assert (model.device, model.halved) == (device, halved)  # type: ignore[attr-defined]


def test_an_index_says_which_device_built_it(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer.build import build_index
    from indexer.settings import Settings
    from indexer.store import read_stats

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The lamp is lit at dusk.\n", encoding="utf-8")
    assert embedder.device == "cpu"
    build_index(docs, Settings(index=tmp_path / "cpu"), embedder=embedder)
    assert read_stats(tmp_path / "cpu").device == "cpu"
    monkeypatch.setattr(embedder.encoder, "device", "cuda:0", raising=False)
    build_index(docs, Settings(index=tmp_path / "gpu"), embedder=embedder)
    assert read_stats(tmp_path / "gpu").to_dict()["device"] == "cuda:0"


def test_token_batches_cap_the_texts_and_the_padded_tokens_of_a_run() -> None:
    lengths = np.array([300, 200, 100, 100, 50, 50, 50, 10])
    batches = list(encoders.token_batches(lengths, 3, 256))
    assert [(b.start, b.stop) for b in batches] == [(0, 1), (1, 2), (2, 4), (4, 7), (7, 8)]
    # Rows x widest row within the budget, unless a text alone is longer than it.
    assert all(
        (b.stop - b.start) * lengths[b.start] <= 256 or b.stop - b.start == 1 for b in batches
    )
    assert list(encoders.token_batches(np.array([5] * 10), 4, 10**6))[-1] == slice(8, 10)


def test_onnx_runs_are_cut_to_the_token_budget_without_changing_vectors(
    onnx_embedders: dict[str, Embedder], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = onnx_embedders["onnx"]
    encoder = loaded.encoder
    assert isinstance(encoder, encoders.OnnxEncoder)
    shapes: list[tuple[int, int]] = []
    run = encoder.sessions.run

    def recording(names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        shapes.append(feed["input_ids"].shape)
        return run(names, feed)

    monkeypatch.setattr(encoder, "sessions", encoders.SessionPool(lambda: _Session(recording), 1))
    monkeypatch.setattr(encoder, "batch_tokens", 1 << 30)
    whole = loaded.embed(SENTENCES, 64)
    assert len(shapes) == 1
    shapes.clear()
    monkeypatch.setattr(encoder, "batch_tokens", 40)
    progress: list[int] = []
    cut = loaded.embed(SENTENCES, 64, progress.append)
    assert len(shapes) > 2 and all(rows * width <= 40 or rows == 1 for rows, width in shapes)
    assert [rows for rows, _ in shapes] == progress  # progress is reported run by run
    np.testing.assert_allclose(cut, whole, atol=1e-4)  # float32: padding is masked out


class _Session:
    def __init__(self, run: object) -> None:
        self.run = run


def test_session_copies_run_batches_side_by_side_and_keep_their_order() -> None:
    # Each of the first two runs waits at the barrier until the other has started: were the
    # copies not running at once, the barrier would time out and break.
    started = threading.Barrier(2, timeout=30)
    calls: list[int] = []

    def run(names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        number = int(feed["x"][0])
        calls.append(number)
        if number < 2:
            started.wait()
        return [feed["x"] * 10]

    pool = encoders.SessionPool(lambda: _Session(run), 2)
    feeds = [{"x": np.array([number])} for number in range(7)]
    results = list(pool.run_all(["y"], feeds))
    assert [int(result[0][0]) for result in results] == [0, 10, 20, 30, 40, 50, 60]
    assert sorted(calls) == list(range(7))
    assert len({id(session) for session in pool.sessions}) == 2


def test_one_core_copies_embed_exactly_as_one_session(
    onnx_embedders: dict[str, Embedder], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = onnx_embedders["onnx-int8"]
    encoder = loaded.encoder
    assert isinstance(encoder, encoders.OnnxEncoder)
    monkeypatch.setattr(encoders, "usable_cores", lambda: 2)
    twin = encoders.OnnxEncoder(encoder.folder, encoder.model_file, _meta_of(encoder), threads=0)
    single = encoders.OnnxEncoder(encoder.folder, encoder.model_file, _meta_of(encoder), threads=2)
    assert (twin.sessions.copies, single.sessions.copies) == (2, 1)
    monkeypatch.setattr(encoders, "usable_cores", lambda: 32)
    many = encoders.OnnxEncoder(encoder.folder, encoder.model_file, _meta_of(encoder), threads=0)
    assert many.sessions.copies == encoders.MOST_GRAPH_COPIES == 8
    assert many.sessions.sessions[0].get_session_options().intra_op_num_threads == 4
    for each in (twin, single):
        each.batch_tokens = 40  # many batches, so that both copies take turns
    texts = SENTENCES * 3
    # int8 activations are scaled per batch: the same batches give the same vectors.
    np.testing.assert_array_equal(twin.encode(texts, 64), single.encode(texts, 64))


def _titled(title: str, body: str, spans: list[tuple[int, int]]) -> tuple[str, list[Span]]:
    """A passage as the indexer embeds it: its title, a line break, its text."""
    shift = len(title) + 1
    return f"{title}\n{body}", [(a + shift, b + shift) for a, b in spans]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_pooled_passage_vectors_are_the_token_weighted_mean_of_title_and_sentences(
    backend: str, tmp_path: Path, onnx_embedders: dict[str, Embedder], torch_embedder: Embedder
) -> None:
    loaded = torch_embedder if backend == "torch" else onnx_embedders[backend]
    cache = EmbeddingCache(tmp_path / "cache.sqlite", loaded.dimension)
    text, spans = _titled("Marie Curie", PASSAGE, PASSAGE_SPANS)
    other, other_spans = _titled("Eiffel Tower", "The tower is in Paris.", [(0, 22)])
    pooled, sentences, computed, reused = embedding.embed_cached(
        loaded, cache, [text, other], [spans, other_spans], 8, pooled=True
    )
    assert (computed, reused) == (6, 0)  # 2 titles and 4 sentences; no passage was run
    pieces = ["Marie Curie", *(text[a:b] for a, b in spans)]
    alone = loaded.embed(pieces)
    np.testing.assert_allclose(sentences[:3], alone[1:], atol=1e-4)
    weights = np.array(loaded.count_tokens(pieces), dtype=np.float32) + 2
    expected = weights @ alone
    np.testing.assert_allclose(pooled[0], expected / np.linalg.norm(expected), atol=1e-4)
    # Near what the model gives the whole passage: each finds the other's first.
    whole = loaded.embed([text, other])
    assert ((pooled @ whole.T).argmax(axis=1) == [0, 1]).all()
    assert ((pooled * whole).sum(axis=1) > 0.8).all()
    cache.close()


def test_joined_passage_vectors_keep_sentences_exact_and_read_each_piece_once(
    tmp_path: Path, onnx_embedders: dict[str, Embedder], torch_embedder: Embedder
) -> None:
    loaded = onnx_embedders["onnx"]
    assert loaded.joins_pieces and not torch_embedder.joins_pieces
    cache = EmbeddingCache(tmp_path / "cache.sqlite", loaded.dimension)
    text, spans = _titled("Marie Curie", PASSAGE, PASSAGE_SPANS)
    other, other_spans = _titled("Eiffel Tower", "The tower is in Paris.", [(0, 22)])
    texts, all_spans = [text, other], [spans, other_spans]
    progress: list[int] = []
    joined, sentences, computed, reused = embedding.embed_cached(
        loaded, cache, texts, all_spans, 8, progress.append, joined=True
    )
    # 2 titles and 4 sentences through the whole model, 2 passages joined from them.
    assert (computed, reused, sum(progress)) == (8, 0, 6)
    pieces = ["Marie Curie", *(text[a:b] for a, b in spans), "Eiffel Tower", other[13:]]
    alone = loaded.embed(pieces)
    np.testing.assert_allclose(sentences, alone[[1, 2, 3, 5]], atol=1e-4)  # fp32: exact
    whole = loaded.embed(texts)
    assert ((joined @ whole.T).argmax(axis=1) == [0, 1]).all()
    # Not the pooled mean of the pieces: the upper layers read them together.
    pooled, *_ = embedding.embed_cached(loaded, cache, texts, all_spans, 8, pooled=True)
    assert (joined * whole).sum(axis=1)[0] > (pooled * whole).sum(axis=1)[0]
    again = embedding.embed_cached(loaded, cache, texts, all_spans, 8, joined=True)
    assert (again.computed, again.reused) == (0, 6)
    np.testing.assert_array_equal(again.texts, joined)
    # Cut into other pieces, the same text is joined again: its pieces' states are run anew.
    recut = embedding.embed_cached(loaded, cache, [text], [spans[:2]], 8, joined=True)
    assert (recut.computed, recut.reused) == (4, 0)
    # A model that cannot join runs its passages whole.
    cache.close()
    torch_cache = EmbeddingCache(tmp_path / "torch.sqlite", torch_embedder.dimension)
    fallback = embedding.embed_cached(torch_embedder, torch_cache, texts, all_spans, 8, joined=True)
    assert fallback.computed == 6  # 2 passages and 4 sentences, each run whole
    torch_cache.close()


def test_one_piece_joined_is_the_piece_read_whole(onnx_embedders: dict[str, Embedder]) -> None:
    loaded = onnx_embedders["onnx"]
    pieces = ["Marie Curie was born in Warsaw in 1867.", "She moved to Paris."]
    piece_vectors, joined = loaded.embed_joined(pieces, [[0], [1], [0, 1], [1, 0]])
    np.testing.assert_allclose(joined[:2], piece_vectors, atol=1e-5)
    assert not np.allclose(joined[2], joined[3], atol=1e-3)  # order counts, as in a text


def test_a_model_the_split_does_not_reproduce_gets_no_joined_graphs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_embedder(DEFAULT_MODEL, "onnx", cache_dir=tmp_path)
    monkeypatch.setattr(onnx_export, "EXPORT_MIN_COSINE", 2.0)  # no split can agree
    assert not loaded.joins_pieces
    assert [path.suffix for path in tmp_path.rglob("joined*")] == [".txt"]  # noted, no graphs
    with pytest.raises(ValueError, match="cannot join"):
        loaded.embed_joined(["a"], [[0]])

    def must_not_run(*args: object) -> None:
        raise AssertionError("the model was loaded again to find out it cannot be split")

    # Later runs read the note instead of loading the model again.
    monkeypatch.setattr(onnx_export, "_export_joined", must_not_run)
    assert not load_embedder(DEFAULT_MODEL, "onnx", cache_dir=tmp_path).joins_pieces


def test_a_split_that_fails_falls_back_to_whole_passages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("tracing failed")

    monkeypatch.setattr(onnx_export, "_export_joined", broken)
    loaded = load_embedder(DEFAULT_MODEL, "onnx", cache_dir=tmp_path)
    assert not loaded.joins_pieces
    (note,) = tmp_path.rglob("joined*-unsupported.txt")
    assert "tracing failed" in note.read_text(encoding="utf-8")


def test_joined_states_keep_the_first_cls_and_the_last_sep_within_the_limit() -> None:
    states = [np.full((4, 1), float(i)) for i in range(3)]  # [CLS] w w [SEP], marked by piece
    for piece in states:
        piece[0], piece[-1] = -1.0, -2.0
    joined = encoders._joined_states(states, [0, 1, 2], 100)
    assert joined[:, 0].tolist() == [-1.0, 0, 0, 1, 1, 2, 2, -2.0]
    assert len(encoders._joined_states(states, [0, 1, 2], 5)) == 5


def test_pooling_embeds_each_title_once_and_runs_texts_without_spans_whole(
    tmp_path: Path,
) -> None:
    encoder = _MeanOfWordsEncoder()
    embedder = Embedder("fake", "onnx", encoder)  # type: ignore[arg-type]
    cache = EmbeddingCache(tmp_path / "cache.sqlite", 2)
    first, first_spans = _titled("Cats", "Cats purr. Cats nap.", [(0, 10), (11, 20)])
    second, second_spans = _titled("Cats", "Cats nap.", [(0, 9)])
    texts, spans = [first, second, "no sentences"], [first_spans, second_spans, []]
    progress: list[int] = []
    vectors, _, computed, reused = embedding.embed_cached(
        embedder, cache, texts, spans, 8, progress.append, pooled=True
    )
    assert sorted(encoder.texts) == ["Cats", "Cats nap.", "Cats purr.", "no sentences"]
    assert (computed, reused, sum(progress)) == (4, 1, 6)
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0)  # pooled
    assert vectors[2].tolist() == [12.0, 1.0]  # the fake model's vector of "no sentences"
    # In context, sentences come from their passage's run: the passage is run, not pooled.
    encoder.texts.clear()
    embedding.embed_cached(embedder, cache, texts, spans, 8, pooled=True, in_context=True)
    assert encoder.texts == []  # a model that does not mean-pool: standalone, all cached


def test_the_cpu_description_is_read_from_this_machine() -> None:
    from indexer.onnx_export import cpu_description, cpu_isa

    described = cpu_description()
    assert f"{os.cpu_count()} cores" in described
    expected = {"avx512_vnni": "AVX-512 VNNI", "avx2": "AVX2 only"}.get(cpu_isa(), cpu_isa())
    assert described.endswith(f"int8 kernels: {expected}")
