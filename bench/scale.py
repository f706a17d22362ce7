"""How paracite scales: indexes of 10k, 100k, ... passages built, served and questioned.

Embedding a million passages takes hours on 2 cores, so the collections are synthetic:
- text: documents of 10 paragraphs, each paragraph 5 sentences drawn at random from the
  sentences of a real index (by default SciFact's, as `paracite eval` leaves it);
- vectors: each text's vector is a real vector perturbed with noise seeded by the text and
  renormalised (cosine about 0.9 to it): a sentence's own vector from the sample index, a
  passage's that of a sample passage chosen by the text's hash. `synthetic_vectors` is true
  in the output. Quality is measured separately (`paracite eval`), not here.
The index is built by `build_index` with an embedder that hands out those vectors; the time
it spends in them is taken out of `build_s`. Questions are real (SciFact's train queries),
embedded by the real model.

Per size: build time and peak RSS of the indexing run, disk size, question latency in
process (p50/p95), over HTTP against `paracite serve` (1 and 4 clients), the server's RSS
after 1,000 questions, ANN recall@100 against exact on the same vectors (when the index has
an ANN structure: `PARACITE_ANN_MIN_PASSAGES`), and the time from adding one file to the
server answering from it (`paracite index` in its own process, the server reloading).

    .venv/bin/python bench/scale.py --passages 10000,100000 --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from common import (
    DEFAULT_SCIFACT,
    ROOT,
    machine_note,
    memory_mib,
    percentile,
    print_table,
    run_clients,
    start_server,
    stop_server,
)

from indexer.build import build_index
from indexer.embedding import Embedder, load_embedder
from indexer.encoders import Encoder, Span
from indexer.evaluation import load_eval_set
from indexer.retrieval import Searcher
from indexer.settings import Settings
from indexer.store import (
    PASSAGE_VECTORS,
    SENTENCE_VECTORS,
    Manifest,
    MetadataStore,
    live_segments,
    require_generation,
)
from indexer.vectors import AnnConfig, FaissVectorIndex, SegmentedVectors

PARAGRAPHS_PER_DOCUMENT = 10
SENTENCES_PER_PARAGRAPH = 5
# Noise per dimension: a 384-dimension unit vector keeps a cosine of about 0.9 to its base.
NOISE = 0.025
SERVED_QUESTIONS = 1000
ADDED_MARKER = "Quokkas photographed on Rottnest Island smile at the zebra finches"


class SampleVectors:
    """Real sentence and passage vectors, read from an existing index."""

    def __init__(self, sentences: list[str], sentence_vectors: np.ndarray, passages: np.ndarray):
        self.sentences = sentences
        self.sentence_vectors = sentence_vectors
        self.passage_vectors = passages
        self.index_of = {text: row for row, text in enumerate(sentences)}

    @classmethod
    def read(cls, index_dir: Path) -> SampleVectors:
        sentences: list[str] = []
        sentence_parts: list[np.ndarray] = []
        passage_parts: list[np.ndarray] = []
        for segment in live_segments(index_dir):
            with MetadataStore.open(segment) as store:
                _, rows = store.counts()
                for passage in store.passages(range(rows)):
                    sentences.extend(s.text for s in passage.sentences)
            sentence_parts.append(np.load(segment / SENTENCE_VECTORS).astype(np.float32))
            passage_parts.append(np.load(segment / PASSAGE_VECTORS).astype(np.float32))
        return cls(sentences, np.concatenate(sentence_parts), np.concatenate(passage_parts))


class SyntheticEncoder:
    """Vectors derived from real ones (see the module docstring); the real tokenizer counts."""

    def __init__(self, real: Encoder, sample: SampleVectors) -> None:
        self.dimension = real.dimension
        self.max_tokens = real.max_tokens
        self.pools_spans = False
        self.seconds = 0.0
        self._real = real
        self._sample = sample

    def encode(
        self, texts: list[str], batch_size: int, on_progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        started = time.perf_counter()
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        sample = self._sample
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            own = sample.index_of.get(text)
            base = (
                sample.sentence_vectors[own]
                if own is not None
                else sample.passage_vectors[seed % len(sample.passage_vectors)]
            )
            noise = np.random.default_rng(seed).standard_normal(self.dimension) * NOISE
            vector = base + noise.astype(np.float32)
            out[row] = vector / np.linalg.norm(vector)
        self.seconds += time.perf_counter() - started
        if on_progress:
            on_progress(len(texts))
        return out

    def encode_with_spans(
        self, texts: list[str], spans: list[list[Span]], batch_size: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        pieces = [
            self.encode([text[a:b] for a, b in own], batch_size)
            for text, own in zip(texts, spans, strict=True)
        ]
        return self.encode(texts, batch_size), pieces

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self._real.count_tokens(texts)


def write_collection(folder: Path, passages: int, sentences: list[str], seed: int = 0) -> int:
    """Documents of recombined real sentences, `passages` paragraphs in all; how many files."""
    rng = np.random.default_rng(seed)
    documents = -(-passages // PARAGRAPHS_PER_DOCUMENT)
    written = 0
    for number in range(documents):
        count = min(PARAGRAPHS_PER_DOCUMENT, passages - written)
        picks = rng.integers(0, len(sentences), size=(count, SENTENCES_PER_PARAGRAPH))
        paragraphs = [" ".join(sentences[i] for i in row) for row in picks]
        path = folder / f"{number // 1000:04d}" / f"doc-{number:07d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
        written += count
    return documents


def _build(docs: Path, settings: Settings, sample_index: Path, results: Any) -> None:
    """The indexing run, in a child process so that its peak RSS is its own."""
    real = load_embedder(settings.model, settings.backend)
    encoder = SyntheticEncoder(real.encoder, SampleVectors.read(sample_index))
    embedder = Embedder(real.model_name, real.backend, encoder)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = build_index(docs, settings, embedder=embedder)
    elapsed = time.perf_counter() - started
    results.put(
        {
            "build_s": elapsed - encoder.seconds,
            "synthetic_embedding_s": encoder.seconds,
            "build_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_build_mb": baseline / 1024,
            "documents": report.count("added"),
        }
    )


def build(docs: Path, settings: Settings, sample_index: Path) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_build, args=(docs, settings, sample_index, results))
    child.start()
    found = results.get()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"the indexing run failed ({child.exitcode})")
    return dict(found)


def disk_mb(index_dir: Path) -> float:
    total = sum(
        path.stat().st_size
        for path in index_dir.rglob("*")
        if path.is_file() and "cache" not in path.relative_to(index_dir).parts
    )
    return total / 2**20


def in_process(index_dir: Path, embedder: Embedder, questions: list[str]) -> dict[str, Any]:
    searcher = Searcher.open(index_dir, embedder)
    try:
        for question in questions[:20]:
            searcher.ask(question)
        took = []
        for question in questions:
            started = time.perf_counter()
            searcher.ask(question)
            took.append((time.perf_counter() - started) * 1000)
        return {
            "question_p50_ms": percentile(took, 50),
            "question_p95_ms": percentile(took, 95),
            "uses_ann": searcher.uses_ann,
        }
    finally:
        searcher.close()


def ann_recall(
    index_dir: Path, embedder: Embedder, questions: list[str], depth: int = 100
) -> float | None:
    """Recall@depth of the ANN search (rescored, as search uses it) against exact search."""
    manifest = Manifest.read(require_generation(index_dir))
    if not any(entry.ann for entry in manifest.segments):
        return None
    exact_parts, ann_parts = [], []
    for entry, folder in zip(manifest.segments, live_segments(index_dir), strict=True):
        config = AnnConfig.from_dict(entry.ann) if entry.ann else None
        exact_parts.append(FaissVectorIndex.open(folder / PASSAGE_VECTORS))
        ann_parts.append(FaissVectorIndex.open(folder / PASSAGE_VECTORS, config))
    exact, approximate = SegmentedVectors(exact_parts), SegmentedVectors(ann_parts)
    found = 0
    for question in questions:
        vector = embedder.embed_query(question)
        truth = set(exact.search(vector, depth).rows.tolist())
        found += len(truth & set(approximate.search(vector, depth).rows.tolist()))
    return found / (depth * len(questions))


def over_http(settings: Settings, docs: Path | None, questions: list[str]) -> dict[str, Any]:
    """HTTP latency with 1 and 4 clients, the server's memory after SERVED_QUESTIONS, and
    (given the indexed folder) how soon a file added to it is answered from."""
    server, base = start_server(settings)
    try:
        results: dict[str, Any] = {}
        asked = 0
        for clients in (1, 4):
            latencies = _ask_all(base, questions, clients)
            asked += len(latencies)
            results[f"http_p50_ms{'' if clients == 1 else '_4_clients'}"] = percentile(
                latencies, 50
            )
            results[f"http_p95_ms{'' if clients == 1 else '_4_clients'}"] = percentile(
                latencies, 95
            )
        while asked < SERVED_QUESTIONS:
            asked += len(_ask_all(base, questions[: SERVED_QUESTIONS - asked], 4))
        results["serve_rss_mb"], results["serve_peak_rss_mb"] = memory_mib(server.pid)
        results["serve_anon_rss_mb"] = anonymous_mib(server.pid)
        if docs is not None:
            results.update(add_one_file(settings, docs, base))
        return results
    finally:
        stop_server(server)


def anonymous_mib(pid: int) -> float:
    """The process's resident memory less the pages of files it maps (RssAnon, MiB): what
    it holds itself, where memory-mapped index files are page cache the kernel can drop."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _ask_all(base: str, questions: list[str], clients: int) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        with httpx.Client(base_url=base, timeout=120) as http:
            for question in questions[offset::clients]:
                started = time.perf_counter()
                response = http.get("/api/ask", params={"q": question})
                took = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{response.status_code}: {response.text[:300]}")
                with lock:
                    latencies.append(took)

    run_clients(client, clients)
    return latencies


def add_one_file(settings: Settings, docs: Path, base: str) -> dict[str, Any]:
    """Seconds from writing one new file to the server answering from it."""
    added = docs / "added" / "quokkas.txt"
    added.parent.mkdir(exist_ok=True)
    started = time.perf_counter()
    added.write_text(f"{ADDED_MARKER}.\n", encoding="utf-8")
    environment = {**os.environ, "PARACITE_INDEX": str(settings.index)}
    run = subprocess.run(
        [sys.executable, "-m", "server.cli", "index", str(docs), "-q"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise SystemExit(f"adding a file failed: {run.stderr[-1000:]}")
    indexed = time.perf_counter() - started
    with httpx.Client(base_url=base, timeout=120) as http:
        while True:
            hits = http.get("/api/search", params={"q": ADDED_MARKER, "k": 1}).json()["passages"]
            if hits and hits[0]["doc_id"] == "added/quokkas.txt":
                break
            if time.perf_counter() - started > 600:
                raise SystemExit("the added file was not found in 10 minutes")
            time.sleep(0.05)
    return {"add_file_s": time.perf_counter() - started, "add_file_index_s": indexed}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--passages", default="10000,100000", help="sizes, comma-separated")
    parser.add_argument(
        "--sample-index",
        type=Path,
        help="index whose sentences and vectors are recombined (default: the SciFact eval index)",
    )
    parser.add_argument(
        "--scifact", type=Path, default=DEFAULT_SCIFACT, help="BEIR SciFact folder (questions)"
    )
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/paracite-scale"),
        help="where collections and indexes are built (removed per size)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    parser.add_argument("--keep", action="store_true", help="keep each size's collection and index")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--existing",
        type=Path,
        help="only ask the questions over this index (kept by --keep): in process three "
        "times (the later passes show it with a warm page cache), then over HTTP, with the "
        "server's memory after 1,000 questions",
    )
    args = parser.parse_args()
    if args.existing is not None:
        asked = [q.text for q in load_eval_set(args.scifact, "beir", "train").questions]
        ask_again(args.existing, asked[: args.questions])
        existing = Settings(index=args.existing)
        print(json.dumps(over_http(existing, None, asked[: args.questions])), flush=True)
        return

    settings = Settings()
    sample_index = args.sample_index or _default_sample(settings)
    sample = SampleVectors.read(sample_index)
    queries = load_eval_set(args.scifact, "beir", "train").questions
    questions = [q.text for q in queries[: args.questions]]
    embedder = load_embedder(settings.model, settings.backend, for_queries=True)
    print(machine_note(), file=sys.stderr if args.json else sys.stdout, flush=True)
    rows = []
    for passages in (int(size) for size in args.passages.split(",")):
        work = args.work / str(passages)
        shutil.rmtree(work, ignore_errors=True)
        docs, index_dir = work / "docs", work / "index"
        files = write_collection(docs, passages, sample.sentences)
        sized = Settings(index=index_dir, model=settings.model, backend=settings.backend)
        result: dict[str, Any] = {"passages": passages, "files": files}
        result.update(build(docs, sized, sample_index))
        manifest = Manifest.read(require_generation(index_dir))
        # Paragraphs longer than the model's window are split, so there are a few more
        # passages than paragraphs asked for.
        result["indexed_passages"] = manifest.passages
        result["sentences"] = manifest.sentences
        result["disk_mb"] = disk_mb(index_dir)
        result.update(in_process(index_dir, embedder, questions))
        result["recall_at_100"] = ann_recall(index_dir, embedder, questions)
        result.update(over_http(sized, docs, questions))
        result["synthetic_vectors"] = True
        result["sample_sentences"] = len(sample.sentences)
        if args.json:
            print(json.dumps(result), flush=True)
        rows.append(result)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if not args.json:
        columns = [
            "passages",
            "sentences",
            "build_s",
            "build_peak_rss_mb",
            "disk_mb",
            "question_p50_ms",
            "question_p95_ms",
            "http_p50_ms",
            "http_p50_ms_4_clients",
            "serve_rss_mb",
            "recall_at_100",
            "add_file_s",
        ]
        print_table(columns, [[row.get(c) for c in columns] for row in rows], args.markdown)


def ask_again(index_dir: Path, questions: list[str], passes: int = 3) -> None:
    """Question latency in process over an existing index, pass after pass (one JSON line
    each)."""
    settings = Settings()
    embedder = load_embedder(settings.model, settings.backend, for_queries=True)
    print(machine_note(), file=sys.stderr, flush=True)
    searcher = Searcher.open(index_dir, embedder)
    try:
        for number in range(1, passes + 1):
            took, cpu = [], []
            for question in questions:
                started, started_cpu = time.perf_counter(), time.process_time()
                searcher.ask(question)
                took.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - started_cpu) * 1000)
            p50, p95 = percentile(took, 50), percentile(took, 95)
            # CPU time is steadier than wall time on a shared machine.
            cpu_p50 = percentile(cpu, 50)
            print(
                json.dumps(
                    {
                        "pass": number,
                        "question_p50_ms": p50,
                        "question_p95_ms": p95,
                        "question_cpu_p50_ms": cpu_p50,
                    }
                )
            )
    finally:
        searcher.close()


def _default_sample(settings: Settings) -> Path:
    candidates = sorted((settings.cache_dir / "eval").glob("scifact-*"))
    for candidate in candidates:
        try:
            Manifest.read(require_generation(candidate))  # one this paracite can read
            return candidate
        except Exception:  # noqa: BLE001 - try the next one
            continue
    raise SystemExit(
        "no SciFact eval index to take sentences and vectors from; run "
        "`paracite eval /work/shared/eval/scifact --split train` first or pass --sample-index"
    )


if __name__ == "__main__":
    main()
