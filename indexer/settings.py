"""The one settings class. Every field can be set with a `PARACITE_` environment variable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "paracite"


Backend = Literal["torch", "onnx", "onnx-int8"]
SentenceVectors = Literal["standalone", "in-context"]
PassageVectors = Literal["standalone", "pooled", "joined"]
ReaderMode = Literal["off", "auto", "on"]
_SWITCH_SPELLINGS = {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}


class Settings(BaseSettings):
    """paracite settings; CLI options override them for one command."""

    model_config = SettingsConfigDict(env_prefix="PARACITE_", extra="ignore")

    index: Path = Field(
        Path(".paracite"), description="Index folder (created by `paracite index`)."
    )
    model: str = Field(
        DEFAULT_MODEL,
        description=(
            "Embedding model used when building an index: the bundled all-MiniLM-L6-v2 "
            "by default, or any sentence-transformers model name or local path."
        ),
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description=(
            "Where exported ONNX models and evaluation indexes are kept "
            "(default: $XDG_CACHE_HOME/paracite or ~/.cache/paracite)."
        ),
    )
    backend: Backend = Field(
        "onnx-int8", description="Embedding backend: onnx-int8 (default), onnx or torch."
    )
    sentence_vectors: SentenceVectors = Field(
        "standalone",
        description=(
            "How sentences are embedded: standalone (each on its own, the default), or "
            "in-context (pooled from their passage's run: indexing about 1.7x faster, rankings "
            "slightly worse; needs a mean-pooling model)."
        ),
    )
    passage_vectors: PassageVectors = Field(
        "standalone",
        description=(
            "How passages are embedded: standalone (each passage run through the model, the "
            "default), pooled (the mean of its sentences' vectors and its title's, so the "
            "model reads each token once), or joined (the model's upper layers read the token "
            "states of its sentences' own runs together: a third of a passage run per passage, for "
            "BERT-style mean-pooling models on the ONNX backends). pooled and joined need "
            "standalone sentence vectors."
        ),
    )
    batch_size: int = Field(
        64,
        ge=1,
        le=4096,
        description="Most texts embedded per batch (ONNX batches also hold at most 512 tokens).",
    )
    max_file_mb: float = Field(
        20.0, gt=0, description="Files larger than this (in MB) are skipped with a reason."
    )
    max_file_seconds: float = Field(
        60.0,
        gt=0,
        description="Files that take longer than this (in seconds) to read are skipped.",
    )
    follow_external_links: bool = Field(
        False,
        description=(
            "Follow links that lead out of the indexed folder (by default they are skipped "
            "with a reason)."
        ),
    )
    window_overlap: int = Field(
        1, ge=0, le=5, description="Sentences shared by consecutive windows of a long paragraph."
    )
    answer_threshold: float | None = Field(
        None,
        description=(
            "Minimum cosine similarity between the question and a sentence of the top "
            "passages; below it, the answer is 'Nothing in the indexed documents answers this.' "
            "Default: 0.35 for standalone sentence vectors, 0.31 for in-context ones."
        ),
    )
    answer_confidence: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "Minimum answerability (the fitted model's probability, 0..1) for the best "
            "sentence to be offered as the answer; below it the documents discuss the "
            "subject without answering. Default: the fitted value (see indexer/answerability.py)."
        ),
    )
    reranker: str | None = Field(
        None,
        description=(
            "A sentence-transformers CrossEncoder (a local folder, or a name "
            "sentence-transformers can load) that rescores the best fused passages of each "
            "question before the answer is chosen. Unset (the default): no reranking."
        ),
    )
    reader: ReaderMode = Field(
        "auto",
        description=(
            "When to read the best candidate sentences of a question together with the "
            "question (a reader fine-tuned from the bundled model, indexer/reader.py) to choose "
            "the answer and decide whether there is one: 'auto' (the default) only when the "
            "best candidates are close in score or the answer's confidence is close to the "
            "minimum, 'on' for every question (about three times a question's time), 'off' "
            "never."
        ),
    )
    reranker_depth: int = Field(
        20,
        ge=2,
        le=200,
        description="How many of the best fused passages the reranker rescores per question.",
    )
    ann_min_passages: int = Field(
        50_000,
        ge=0,
        description=(
            "Index segments with at least this many passages get an approximate (ANN) vector "
            "index, built by `paracite index` and searched by questions; smaller ones are "
            "searched exactly. 0 forces ANN on."
        ),
    )
    segments_per_tier: int = Field(
        10,
        ge=2,
        le=100,
        description=(
            "An indexing run writes its new and changed files as a new segment of the index; "
            "when this many segments are of about the same size (within a factor of ten), "
            "the run merges them into one."
        ),
    )
    host: str = Field("127.0.0.1", description="Address `paracite serve` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `paracite serve` listens on.")
    public_url: str | None = Field(
        None,
        description=(
            "This server's address as readers reach it (e.g. https://search.example.com), for "
            "the absolute links it hands out, such as copied citations. Unset: links are "
            "relative and the browser completes them; the Host header is never used."
        ),
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="Origins allowed to call the read-only API (comma-separated, or *).",
    )

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        url = urlsplit(value.strip())
        if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
            raise ValueError("must be an http(s) URL such as https://search.example.com")
        return urlunsplit((url.scheme, url.netloc, url.path.rstrip("/"), "", ""))

    @field_validator("reader", mode="before")
    @classmethod
    def _reader_mode(cls, value: object) -> object:
        """Yes/no spellings (true, 1, false, 0) mean 'on' and 'off', as they did when the
        reader was a switch."""
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str):
            spelled = value.strip().lower()
            return _SWITCH_SPELLINGS.get(spelled, spelled)
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    def with_overrides(self, **overrides: object) -> Settings:
        """A copy with the given fields replaced, skipping None (an option not given)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return self.model_copy(update=given) if given else self
