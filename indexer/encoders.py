"""Encoders: the backends that turn texts into unit-length vectors and count their tokens.

`TorchEncoder` runs a model through sentence-transformers; `OnnxEncoder` runs an ONNX export
of the whole sentence-transformers pipeline (see `indexer.onnx_export`) in onnxruntime,
tokenised with the model's own fast tokenizer. An encoder of a model that mean-pools its token
embeddings can also pool the vectors of character spans of a text from the run over the text.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import onnxruntime
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

# The tokenizer file an ONNX export keeps next to its model files.
ONNX_TOKENIZER = "tokenizer.json"

Span = tuple[int, int]
# The most tokens (rows x padded width) one ONNX run takes, whatever the batch size. Small
# runs are faster on this CPU: on SciFact abstracts (AMD EPYC, 2 cores, int8) runs of at
# most 512 tokens embedded passages and sentences 1.3x faster than runs of 64 texts on a
# quiet machine, about 2x under load; 256 to 1,024 did about as well (bench/batching.py,
# BENCHMARKS.md).
BATCH_TOKENS = 512
# Each copy of a graph holds its own weights (about 23 MB int8, 90 MB float32 for MiniLM):
# beyond this many cores, copies share them out as threads.
MOST_GRAPH_COPIES = 8
# Texts per call to sentence-transformers, between two progress reports.
TORCH_PROGRESS_TEXTS = 256


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Encoder(Protocol):
    """What a backend provides: unit-length vectors and the tokenizer's token counts.

    An encoder whose model mean-pools its token embeddings (`pools_spans`) also returns, for
    each text, the vectors of character spans of it from the same run.
    """

    dimension: int
    max_tokens: int
    pools_spans: bool

    def encode(
        self,
        texts: list[str],
        batch_size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> np.ndarray: ...

    def encode_with_spans(
        self, texts: list[str], spans: list[list[Span]], batch_size: int
    ) -> tuple[np.ndarray, list[np.ndarray]]: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...


def token_batches(lengths: np.ndarray, most_rows: int, most_tokens: int) -> Iterator[slice]:
    """Consecutive runs of texts whose `lengths` (in tokens, longest first) fit a batch:
    at most `most_rows` texts and `most_tokens` tokens once padded to the longest; a text
    longer than the budget goes alone."""
    start = 0
    while start < len(lengths):
        width = max(int(lengths[start]), 1)
        count = max(1, min(most_rows, most_tokens // width))
        stop = min(start + count, len(lengths))
        yield slice(start, stop)
        start = stop


def pool_spans(
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


def pools_by_mean(model: SentenceTransformer) -> bool:
    """Whether the model's embedding is the (normalised) mean of its token embeddings."""
    kinds = [type(module).__name__ for module in model]
    return kinds in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]) and (
        getattr(model[1], "pooling_mode", None) == "mean"
    )


def cuda_available() -> bool:
    """Whether torch sees a CUDA device."""
    import torch

    return bool(torch.cuda.is_available())


def torch_device() -> str:
    """Where the torch backend runs a model: the GPU when there is one, else the CPU."""
    return "cuda" if cuda_available() else "cpu"


def load_sentence_transformer(
    location: str, device: str = "cpu", **model_kwargs: Any
) -> SentenceTransformer:
    """The sentence-transformers model at `location` on `device`, with transformers quiet.

    On a GPU the model runs in float16 (vectors still come out as float32).
    """
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"device": device}
    if model_kwargs:
        kwargs["model_kwargs"] = model_kwargs
    model = SentenceTransformer(location, **kwargs)
    if device.startswith("cuda"):
        model.half()
    return model


class TorchEncoder:
    """sentence-transformers on torch."""

    def __init__(self, model: SentenceTransformer) -> None:
        self.model = model
        dimension = model.get_embedding_dimension()
        if dimension is None:
            raise ValueError("the model does not say its embedding dimension")
        self.dimension = int(dimension)
        self.max_tokens = int(model.max_seq_length or 256)
        self.pools_spans = pools_by_mean(model)
        self.device = str(model.device)

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
            pooled.append(pool_spans(matrix, offsets, own_spans, self.dimension))
        return vectors, pooled

    def encode(
        self,
        texts: list[str],
        batch_size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), TORCH_PROGRESS_TEXTS):
            chunk = texts[start : start + TORCH_PROGRESS_TEXTS]
            vectors[start : start + len(chunk)] = self.model.encode(
                chunk,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if on_progress:
                on_progress(len(chunk))
        return vectors

    def count_tokens(self, texts: list[str]) -> list[int]:
        encoded = self.model.tokenizer(texts, add_special_tokens=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]


class SessionPool:
    """Copies of one ONNX graph that run batches side by side, each on its share of the cores.

    On small batches one session spread over both cores spends much of each run keeping its
    threads in step: on SciFact abstracts and their sentences (AMD EPYC, 2 cores, int8) two
    one-core copies taking turns at the batches embedded 1.14x the tokens per second of one
    two-core session (bench/batching.py --sessions, BENCHMARKS.md). With one copy, runs go
    straight to it, so concurrent callers (a server's request threads) are not serialised.
    """

    def __init__(self, make: Callable[[], onnxruntime.InferenceSession], copies: int) -> None:
        self.copies = max(1, copies)
        self._make = make
        # One copy now (so that a graph that cannot load says so at once); the others on the
        # first batches, so that a re-index with nothing to embed does not wait for them.
        self.sessions = [make()]
        self._free: queue.SimpleQueue[onnxruntime.InferenceSession] = queue.SimpleQueue()
        self._free.put(self.sessions[0])
        self._executor: ThreadPoolExecutor | None = None
        self._starting = threading.Lock()

    def _start_copies(self) -> ThreadPoolExecutor:
        with self._starting:
            if self._executor is None:
                for _ in range(self.copies - 1):
                    session = self._make()
                    self.sessions.append(session)
                    self._free.put(session)
                self._executor = ThreadPoolExecutor(self.copies, thread_name_prefix="onnx-run")
            return self._executor

    def run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The `outputs` of one run of the graph on `feed`."""
        if self.copies == 1:
            return list(self.sessions[0].run(outputs, feed))
        session = self._free.get()
        try:
            return list(session.run(outputs, feed))
        finally:
            self._free.put(session)

    def run_all(
        self, outputs: list[str], feeds: Iterable[dict[str, np.ndarray]]
    ) -> Iterator[list[np.ndarray]]:
        """The outputs of a run on each of `feeds`, in order; the copies take turns, with at
        most two feeds per copy waiting so that results do not pile up."""
        if self.copies == 1:
            yield from (self.run(outputs, feed) for feed in feeds)
            return
        executor = self._start_copies()
        pending: deque[Future[list[np.ndarray]]] = deque()
        for feed in feeds:
            pending.append(executor.submit(self.run, outputs, feed))
            if len(pending) >= 2 * self.copies:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class OnnxEncoder:
    """The exported pipeline in onnxruntime; texts are tokenised with the `tokenizers` library.

    `threads` 0 (the default, for indexing) runs one one-core copy of the graph per usable
    core (`SessionPool`; at most `MOST_GRAPH_COPIES`, then with several threads each); any
    other number runs one session on that many threads.
    """

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
        self.batch_tokens = BATCH_TOKENS
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
        cores = usable_cores()
        self.copies = min(cores, MOST_GRAPH_COPIES) if threads == 0 else 1
        options.intra_op_num_threads = cores // self.copies if self.copies > 1 else threads
        # Idle pool threads otherwise spin after each run and steal the cores from the numpy
        # scoring that follows: a SciFact question took 23.8 ms with spinning, 12.9 without.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._options = options
        self.sessions = self._pool(model_file)
        self._joined: tuple[SessionPool, SessionPool] | None = None
        # Makes (or finds) the joined graphs' files on first use; set by the exporter.
        self.joined_loader: Callable[[], tuple[str, str] | None] | None = None

    def _pool(self, model_file: str) -> SessionPool:
        import onnxruntime as ort

        def make() -> onnxruntime.InferenceSession:
            return ort.InferenceSession(
                str(self.folder / model_file), self._options, providers=["CPUExecutionProvider"]
            )

        return SessionPool(make, self.copies)

    @property
    def joins_pieces(self) -> bool:
        """Whether `encode_joined` can join a text's vector from its pieces' runs (the first
        call loads the graphs that do it, exporting them if need be)."""
        if self._joined is None and self.joined_loader is not None:
            loader, self.joined_loader = self.joined_loader, None
            files = loader()
            if files is not None:
                self._joined = (self._pool(files[0]), self._pool(files[1]))
        return self._joined is not None

    def _prepare(self, texts: list[str]) -> list[str]:
        """Lowercased if the model says so, character by character so that offsets hold."""
        if not self.lower_case:
            return texts
        return ["".join(c if len(c.lower()) != 1 else c.lower() for c in text) for text in texts]

    def count_tokens(self, texts: list[str]) -> list[int]:
        encoded = self._counting.encode_batch(self._prepare(texts), add_special_tokens=False)
        return [len(item.ids) for item in encoded]

    def encode(
        self,
        texts: list[str],
        batch_size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Unit-length vectors of `texts`, in one stream of runs (so that the copies of the
        graph never wait for each other between chunks); progress is counted per run."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for rows, outputs, _ in self._runs(texts, batch_size):
            vectors[rows] = outputs[0]
            if on_progress:
                on_progress(len(rows))
        return vectors

    def encode_with_spans(
        self, texts: list[str], spans: list[list[Span]], batch_size: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        pooled: list[np.ndarray] = [np.zeros((0, self.dimension), dtype=np.float32)] * len(texts)
        runs = self._runs(texts, batch_size, names=["sentence_embedding", "token_embeddings"])
        for rows, (embedded, tokens), encoded in runs:
            vectors[rows] = embedded
            for position, index in enumerate(rows):
                item = encoded[index]
                offsets = np.asarray(item.offsets, dtype=np.int64).reshape(-1, 2)
                pooled[index] = pool_spans(
                    tokens[position, : len(item.ids)], offsets, spans[index], self.dimension
                )
        return vectors, pooled

    def encode_joined(
        self, pieces: list[str], groups: list[list[int]], batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of `pieces`, each read on its own, and of each group of pieces (positions
        in `pieces`, in text order) joined: the upper layers of the model read the group's
        token states from the pieces' own runs together, so no text is read twice by the
        lower layers. Joined vectors have at most `max_tokens` tokens, as a whole run would.
        """
        if self._joined is None:
            raise RuntimeError("this export has no joined graphs")
        lower, upper = self._joined
        piece_vectors = np.zeros((len(pieces), self.dimension), dtype=np.float32)
        states: list[np.ndarray] = [np.zeros((0, 0), dtype=np.float32)] * len(pieces)
        runs = self._runs(
            pieces, batch_size, sessions=lower, names=["sentence_embedding", "states"]
        )
        for rows, (embedded, hidden), encoded in runs:
            piece_vectors[rows] = embedded
            for position, index in enumerate(rows):
                states[index] = hidden[position, : len(encoded[index].ids)]
        joined = [_joined_states(states, group, self.max_tokens) for group in groups]
        group_vectors = np.zeros((len(groups), self.dimension), dtype=np.float32)
        lengths = np.array([len(item) for item in joined])

        def feed_of(rows: np.ndarray) -> dict[str, np.ndarray]:
            width = int(lengths[rows].max())
            feed = np.zeros((len(rows), width, joined[rows[0]].shape[1]), dtype=np.float32)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for row, index in enumerate(rows):
                feed[row, : lengths[index]] = joined[index]
                mask[row, : lengths[index]] = 1
            return {"states": feed, "attention_mask": mask}

        for rows, result in self._batched(
            lengths, batch_size, upper, ["sentence_embedding"], feed_of
        ):
            group_vectors[rows] = result[0]
        return piece_vectors, group_vectors

    def _runs(
        self,
        texts: list[str],
        batch_size: int,
        *,
        sessions: SessionPool | None = None,
        names: list[str] | None = None,
    ) -> Iterator[tuple[np.ndarray, list[np.ndarray], list[Any]]]:
        """(rows, outputs, encodings) per batch; texts of similar length share a batch.

        The outputs are `names` of `sessions` (by default the vectors of the whole model)."""
        if not texts:
            return
        encoded = self._tokenizer.encode_batch(self._prepare(texts))
        lengths = np.array([len(item.ids) for item in encoded])

        def feed_of(rows: np.ndarray) -> dict[str, np.ndarray]:
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
            return {name: feed[name] for name in self.inputs}

        outputs = names or ["sentence_embedding"]
        for rows, result in self._batched(
            lengths, batch_size, sessions or self.sessions, outputs, feed_of
        ):
            yield rows, result, encoded

    def _batched(
        self,
        lengths: np.ndarray,
        batch_size: int,
        sessions: SessionPool,
        outputs: list[str],
        feed_of: Callable[[np.ndarray], dict[str, np.ndarray]],
    ) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
        """(rows, outputs) per run over items of `lengths` tokens: longest first, cut to the
        token budget, each run's inputs made by `feed_of(rows)`."""
        order = np.argsort(-lengths, kind="stable")
        batches = [
            order[batch] for batch in token_batches(lengths[order], batch_size, self.batch_tokens)
        ]
        yield from zip(batches, sessions.run_all(outputs, map(feed_of, batches)), strict=True)


def _joined_states(states: Sequence[np.ndarray], group: Sequence[int], most: int) -> np.ndarray:
    """The token states of a group of pieces end to end, as one run would hold them: the
    first piece's [CLS], every piece's tokens, the last piece's [SEP]."""
    last = len(group) - 1
    parts = [
        states[piece][(0 if i == 0 else 1) : (len(states[piece]) if i == last else -1)]
        for i, piece in enumerate(group)
    ]
    return np.concatenate(parts)[:most]
