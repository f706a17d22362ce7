"""The ONNX export of a sentence-transformers model, its int8 variants, and their cache.

The export is made once per model from its local files, checked against torch, and kept in
the user cache (`$PARACITE_CACHE_DIR/onnx/`, by default `~/.cache/paracite/onnx/`) for the
indexer and the server to reuse; the int8 variant is a dynamic quantisation tuned to the CPU's
instruction set.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from indexer.encoders import (
    ONNX_TOKENIZER,
    OnnxEncoder,
    TorchEncoder,
    load_sentence_transformer,
    pools_by_mean,
)
from indexer.text import slug

# Bump when the export or quantisation changes: older cached exports are then ignored.
EXPORT_VERSION = 2
ONNX_META = "paracite-onnx.json"
ONNX_FP32 = "model.onnx"
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Cosine an export must reach against torch on the check sentences, or it is not cached.
EXPORT_MIN_COSINE = 0.999
# Joined passage vectors: the layers up to this one read each sentence alone, the rest read
# a passage's sentences together (`_export_joined`). Of the bundled model's six, splitting
# after 1 to 4 ranked alike on SQuAD part A (hybrid R@1 0.836 to 0.837), after 5 lower
# (0.833); 4 leaves the least to run per passage (eval/reports/README.md).
JOIN_LAYER = 4
# The reader's fp32 graph; the scale its low-rank updates were trained at
# (eval/reader_experiment.py); how far its logits may stray from torch's.
READER_FP32 = "reader.onnx"
LOW_RANK_SCALE = 2.0
READER_MAX_DIFFERENCE = 1e-3
_READER_CHECK = (
    ("How many documents were examined?", "During this period, 54 documents were examined."),
    ("Who opened the café?", "Its owner, Josée Lefèvre, opened it in 1962 after the war."),
)
_CHECK_SENTENCES = (
    "How many people live in the city?",
    "A",
    "The mitochondria produce most of the chemical energy needed by the cell, stored in ATP.",
)


def cache_root(cache_dir: Path) -> Path:
    """Where exported models are kept: the `cache_dir` setting (PARACITE_CACHE_DIR), expanded."""
    return cache_dir.expanduser()


def load_onnx_encoder(
    location: str,
    cache_dir: Path,
    *,
    quantized: bool,
    label: str = "",
    threads: int = 0,
) -> OnnxEncoder:
    """The cached export of the model at `location`, exported (and quantised) if missing.

    The two graphs that join passage vectors from their pieces' runs are made on first use
    (`OnnxEncoder.joins_pieces`), for a model that can have them.
    """
    folder = _export_folder(location, cache_dir, label)
    model_file = _int8_file_name() if quantized else ONNX_FP32
    if not _export_complete(folder) or not (folder / model_file).exists():
        with _export_lock(folder):
            if not _export_complete(folder):
                _export_onnx(location, folder)
            if quantized and not (folder / model_file).exists():
                _quantize(folder / ONNX_FP32, folder / model_file, cpu_isa())
    meta = json.loads((folder / ONNX_META).read_text(encoding="utf-8"))
    encoder = OnnxEncoder(folder, model_file, meta, threads)
    if meta.get("pools_spans"):
        encoder.joined_loader = functools.partial(_joined_export, location, folder, quantized)
    return encoder


def _joined_export(location: str, folder: Path, quantized: bool) -> tuple[str, str] | None:
    """The joined graphs of the export in `folder`, made if missing; None if the model
    cannot be split (`_export_joined`), which is noted beside the export so that later runs
    do not load the model again to find out."""
    files = joined_files(quantized)
    unsupported = folder / f"joined{JOIN_LAYER}-unsupported.txt"
    if unsupported.exists():
        return None
    if not all((folder / name).exists() for name in files):
        with _export_lock(folder):
            try:
                _export_joined(location, folder, quantized)
            except Exception as error:  # noqa: BLE001 - passages are then embedded whole
                reason = f"{type(error).__name__}: {error}"
            else:
                reason = "the model's layers are not reproduced by the split"
            if not all((folder / name).exists() for name in files):
                unsupported.write_text(reason + "\n", encoding="utf-8")
                return None
    return files


def joined_files(quantized: bool) -> tuple[str, str]:
    """The lower and upper graphs of a joined export (int8 ones are tuned to this CPU)."""
    suffix = f"_int8_{cpu_isa()}" if quantized else ""
    return (
        f"joined{JOIN_LAYER}_lower{suffix}.onnx",
        f"joined{JOIN_LAYER}_upper{suffix}.onnx",
    )


def _export_joined(location: str, folder: Path, quantized: bool) -> None:
    """Split the model's transformer after layer JOIN_LAYER into two graphs.

    The lower graph reads one piece of text (a sentence, a title) and returns its vector, as
    the whole model would, and its token states after layer JOIN_LAYER. The upper graph
    takes the token states of a passage's pieces laid end to end and runs the remaining
    layers over them together, with attention across pieces, then pools them. A model that
    is not a BERT-style encoder with mean pooling gets no joined graphs (and its passages
    are embedded whole).
    """
    import torch

    lower_name, upper_name = joined_files(False)
    if not ((folder / lower_name).exists() and (folder / upper_name).exists()):
        model = load_sentence_transformer(location, attn_implementation="eager")
        model.eval()
        transformer = getattr(model[0], "auto_model", None)
        found_blocks = getattr(getattr(transformer, "encoder", None), "layer", None)
        found_embeddings = getattr(transformer, "embeddings", None)
        if not pools_by_mean(model) or found_blocks is None or found_embeddings is None:
            return
        if len(found_blocks) <= JOIN_LAYER:
            return
        blocks: torch.nn.ModuleList = found_blocks
        embeddings: torch.nn.Module = found_embeddings
        meta = json.loads((folder / ONNX_META).read_text(encoding="utf-8"))
        inputs = list(meta["inputs"])

        def run_blocks(
            own: torch.nn.ModuleList, states: torch.Tensor, mask: torch.Tensor
        ) -> torch.Tensor:
            additive = (1.0 - mask[:, None, None, :].to(states.dtype)) * torch.finfo(
                states.dtype
            ).min
            for block in own:
                out = block(states, attention_mask=additive)
                states = out[0] if isinstance(out, tuple) else out
            return states

        def pooled(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            weights = mask.unsqueeze(-1).to(states.dtype)
            mean = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

        class Upper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.blocks = torch.nn.ModuleList(blocks[JOIN_LAYER:])

            def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                return pooled(run_blocks(self.blocks, states, mask), mask)

        class Lower(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embeddings = embeddings
                self.blocks = torch.nn.ModuleList(blocks[:JOIN_LAYER])
                self.upper = Upper()

            def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                named = dict(zip(inputs, tensors, strict=True))
                mask = named["attention_mask"]
                types = named.get("token_type_ids")
                states = self.embeddings(input_ids=named["input_ids"], token_type_ids=types)
                lower = run_blocks(self.blocks, states, mask)
                return self.upper(lower, mask), lower

        sample = model.tokenizer(list(_CHECK_SENTENCES), padding=True, return_tensors="pt")
        with torch.inference_mode():
            vectors, sample_states = Lower()(*(sample[name] for name in inputs))
        # A model whose layers need more than hidden states and a mask (relative positions,
        # rotary embeddings) is not reproduced by this split: it gets no joined graphs.
        expected = model.encode(list(_CHECK_SENTENCES), normalize_embeddings=True)
        if float((vectors.numpy() * expected).sum(axis=1).min()) < EXPORT_MIN_COSINE:
            return

        def export_lower(path: Path) -> None:
            _onnx_export(
                Lower().eval(),
                tuple(sample[name] for name in inputs),
                path,
                inputs,
                ["sentence_embedding", "states"],
            )

        def export_upper(path: Path) -> None:
            _onnx_export(
                Upper().eval(),
                (sample_states, sample["attention_mask"]),
                path,
                ["states", "attention_mask"],
                ["sentence_embedding"],
            )

        _write_atomic(folder / lower_name, export_lower)
        _write_atomic(folder / upper_name, export_upper)
    if quantized:
        for source, target in zip(joined_files(False), joined_files(True), strict=True):
            if not (folder / target).exists():
                _quantize(folder / source, folder / target, cpu_isa())


def _onnx_export(
    module: object, sample: tuple[object, ...], path: Path, inputs: list[str], outputs: list[str]
) -> None:
    """Export `module` traced on `sample`: batch and token axes vary, and the vectors it
    returns (`sentence_embedding`) and the reader's `logit` have a batch axis only."""
    import torch

    dynamic = {name: {0: "batch", 1: "tokens"} for name in [*inputs, *outputs]}
    dynamic["sentence_embedding"] = {0: "batch"}
    dynamic["logit"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,  # type: ignore[arg-type]
            sample,
            str(path),
            dynamo=False,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=17,
            do_constant_folding=True,
        )


def load_reader_export(location: str, adapter: Path, cache_dir: Path) -> Path:
    """The int8 reader graph made from the model at `location` and the trained updates in
    `adapter` (`merge_adapter`), exported, checked and quantised if missing; its folder holds
    the tokenizer too (`ONNX_TOKENIZER`)."""
    path = reader_export_path(location, adapter, cache_dir)
    folder, model_file = path.parent, path.name
    if not path.exists():
        with _export_lock(folder):
            if not (folder / READER_FP32).exists():
                _export_reader(location, adapter, folder)
            if not (folder / model_file).exists():
                _quantize(folder / READER_FP32, folder / model_file, cpu_isa())
    return folder / model_file


def reader_export_path(location: str, adapter: Path, cache_dir: Path) -> Path:
    """Where `load_reader_export` keeps the int8 reader graph (which may not exist yet)."""
    digest = hashlib.sha256(adapter.read_bytes()).hexdigest()[:12]
    models = _export_folder(location, cache_dir, "reader")
    return models.with_name(f"{models.name}-{digest}") / _reader_file_name()


def _reader_file_name() -> str:
    return f"reader_int8_{cpu_isa()}.onnx"


def merge_adapter(model: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Apply trained updates to a BERT-style `model` in place and return the reader's head.

    `arrays` holds, by parameter name, low-rank pairs of every linear map (`<name>.down`,
    `<name>.up`: the weight gains LOW_RANK_SCALE * up @ down), new values of biases and layer
    norms (a wrapped map's bias is named `<name>.base.bias`), and the head's
    `head.weight` and `head.bias` (one logit from the [CLS] state)."""
    import torch

    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in arrays.items():
            if name.startswith("head.") or name.endswith(".up"):
                continue
            if name.endswith(".down"):
                base = name.removesuffix(".down")
                update = arrays[f"{base}.up"].astype(np.float32) @ value.astype(np.float32)
                parameters[f"{base}.weight"] += LOW_RANK_SCALE * torch.from_numpy(update)
            else:
                parameters[name.replace(".base.", ".")].copy_(torch.from_numpy(value))
        head = torch.nn.Linear(model.config.hidden_size, 1)
        head.weight.copy_(torch.from_numpy(arrays["head.weight"]))
        head.bias.copy_(torch.from_numpy(arrays["head.bias"]))
    return head


def _export_reader(location: str, adapter: Path, folder: Path) -> None:
    """Export the reader ("[CLS] question [SEP] sentence [SEP]" in, one logit out) as fp32
    ONNX, checked against torch."""
    import onnxruntime as ort
    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModel.from_pretrained(location, attn_implementation="eager")
    with np.load(adapter) as stored:
        head = merge_adapter(model, dict(stored))
    model.eval()

    class Reading(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.head = head

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            named = dict(zip(ONNX_INPUTS, tensors, strict=True))
            return self.head(self.model(**named).last_hidden_state[:, 0]).squeeze(-1)

    questions = [question for question, _ in _READER_CHECK]
    sentences = [sentence for _, sentence in _READER_CHECK]
    sample = tokenizer(questions, sentences, padding=True, return_tensors="pt")
    reading = Reading().eval()
    with torch.inference_mode():
        expected = reading(*(sample[name] for name in ONNX_INPUTS)).numpy()

    def export(path: Path) -> None:
        _onnx_export(
            reading, tuple(sample[name] for name in ONNX_INPUTS), path, list(ONNX_INPUTS), ["logit"]
        )

    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(
        folder / ONNX_TOKENIZER,
        lambda path: path.write_text(tokenizer.backend_tokenizer.to_str(), encoding="utf-8"),
    )
    _write_atomic(folder / ".reader-check.onnx", export)
    session = ort.InferenceSession(
        str(folder / ".reader-check.onnx"), providers=["CPUExecutionProvider"]
    )
    (got,) = session.run(["logit"], {name: sample[name].numpy() for name in ONNX_INPUTS})
    worst = float(np.abs(got - expected).max())
    if worst > READER_MAX_DIFFERENCE:
        (folder / ".reader-check.onnx").unlink()
        raise RuntimeError(f"the reader's ONNX export disagrees with torch (by {worst:.4f})")
    os.replace(folder / ".reader-check.onnx", folder / READER_FP32)


def _export_folder(location: str, cache_dir: Path, label: str = "") -> Path:
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
    return cache_root(cache_dir) / "onnx" / f"{slug(name, 60)}-{digest.hexdigest()[:12]}"


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

    model = load_sentence_transformer(location, attn_implementation="eager")
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

    pools_spans = pools_by_mean(model)

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            features = self.model(dict(zip(inputs, tensors, strict=True)))
            embedding = torch.nn.functional.normalize(features["sentence_embedding"], p=2.0, dim=1)
            return (embedding, features["token_embeddings"]) if pools_spans else (embedding,)

    outputs = ["sentence_embedding", "token_embeddings"] if pools_spans else ["sentence_embedding"]

    def export(path: Path) -> None:
        _onnx_export(
            Pipeline().eval(), tuple(sample[name] for name in inputs), path, inputs, outputs
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
        OnnxEncoder(folder, ONNX_FP32, meta),
        np.asarray(expected, dtype=np.float32),
        TorchEncoder(model) if pools_spans else None,
    )
    _write_atomic(
        folder / ONNX_META,
        lambda path: path.write_text(json.dumps(meta, indent=2), encoding="utf-8"),
    )


def _check(
    encoder: OnnxEncoder, expected: np.ndarray, reference: TorchEncoder | None = None
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
    flags = set(_cpuinfo("flags").split())
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "avx512_vnni"
    return "avx2"


def cpu_description() -> str:
    """The CPU as reports name it: model, core count and int8 kernels ("AMD EPYC, 2 cores,
    int8 kernels: AVX-512 VNNI"), read from this machine rather than assumed."""
    model = _cpuinfo("model name") or platform.processor() or platform.machine()
    isa = {"avx512_vnni": "AVX-512 VNNI", "avx2": "AVX2 only"}.get(cpu_isa(), cpu_isa())
    return f"{model}, {os.cpu_count()} cores, int8 kernels: {isa}"


def _cpuinfo(field: str) -> str:
    """The first value of `field` in /proc/cpuinfo ("flags", "model name"), or ""."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    return ""


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
