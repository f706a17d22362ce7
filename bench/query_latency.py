"""Question latency on the SciFact index: in process, and over HTTP against a real server.

In process, `Searcher.ask` answers the first `--questions` SciFact train queries (with
`--squad FILE --index DIR`, every fifth question of a SQuAD file instead) one at a time
(after a warm-up). Over HTTP, `paracite serve` runs in its own process (uvicorn, as users run
it) and 1, 4 and 16 concurrent clients (threads with keep-alive connections) send GET
/api/ask requests for `--seconds` each; every request must return 200. Reported: p50/p99
latency, requests/s, and the server's resident memory (RSS) after each load and at its peak.
The clients share the 2 CPUs with the server, so HTTP figures include that contention.

The index is `--index` if given; otherwise SciFact is indexed (once, then incrementally) into
`$PARACITE_CACHE_DIR/bench/` with `--backend`.
Answering follows the `PARACITE_*` settings of the environment (`PARACITE_READER=on` reads
every question's best sentences with the question, `off` none; the server started for HTTP
inherits them).

    .venv/bin/python bench/query_latency.py --backend onnx-int8
    .venv/bin/python bench/query_latency.py --index ~/.cache/paracite/eval/scifact-...-onnx-int8
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import httpx
from common import (
    BACKENDS,
    add_question_options,
    asked_questions,
    cpu_seconds,
    machine_note,
    memory_mib,
    percentile,
    print_table,
    run_clients,
    start_server,
    stop_server,
    write_corpus,
)

from indexer.build import build_index
from indexer.evaluation import EvalSet
from indexer.retrieval import Searcher
from indexer.settings import DEFAULT_MODEL, Settings
from indexer.store import Manifest, current_generation

CONCURRENCY = (1, 4, 16)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--index", type=Path, help="an existing index (default: build SciFact)")
    add_question_options(parser)
    parser.add_argument("--backend", choices=BACKENDS, help="backend of the index to build")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--questions", type=int, default=200, help="in-process questions")
    parser.add_argument("--seconds", type=float, default=20.0, help="HTTP load per concurrency")
    parser.add_argument(
        "--clients", default=",".join(map(str, CONCURRENCY)), help="concurrent clients to try"
    )
    parser.add_argument("--k", type=int, default=5, help="passages per answer")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()

    eval_set, questions = asked_questions(parser, args)
    settings = index_settings(args, eval_set)
    print(f"# index {settings.index} ({settings.backend})", flush=True)

    searcher = Searcher.from_settings(settings)
    for text in questions[:10]:
        searcher.ask(text, args.k)
    timings = []
    for text in questions[: args.questions]:
        started = time.perf_counter()
        searcher.ask(text, args.k)
        timings.append((time.perf_counter() - started) * 1000)
    stats = searcher.stats()
    searcher.close()
    del searcher
    print(machine_note())
    print(f"# in process: {len(timings)} questions, {stats.passages} passages indexed")
    print_table(
        ["questions", "p50 ms", "p99 ms", "mean ms"],
        [
            [
                len(timings),
                percentile(timings, 50),
                percentile(timings, 99),
                sum(timings) / len(timings),
            ]
        ],
        args.markdown,
    )

    clients = [int(value) for value in args.clients.split(",") if value.strip()]
    rows = _http_rows(settings, questions, clients, args.seconds, args.k)
    print(machine_note())
    print(f"# over HTTP: GET /api/ask?k={args.k}, {args.seconds:.0f} s per row")
    print_table(
        [
            "clients",
            "requests",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "server CPU ms/req",
            "client CPU ms/req",
            "server RSS MiB",
            "server peak RSS MiB",
        ],
        rows,
        args.markdown,
    )


def index_settings(args: argparse.Namespace, eval_set: EvalSet) -> Settings:
    """Settings pointing at the index to query, building the SciFact one if none is given."""
    if args.index:
        generation = current_generation(args.index.resolve())
        if generation is None:
            raise SystemExit(f"{args.index} holds no index")
        manifest = Manifest.read(generation)
        return Settings(index=args.index, model=manifest.model, backend=manifest.backend)
    backend = args.backend or Settings().backend
    work = Settings().cache_dir.expanduser() / "bench"
    corpus = work / "scifact-corpus"
    if not corpus.is_dir():
        write_corpus(eval_set, corpus)
    settings = Settings(
        index=work / f"scifact-index-{backend}",
        model=args.model,
        backend=backend,
    )
    started = time.perf_counter()
    report = build_index(corpus, settings)
    state = "up to date" if report.up_to_date else f"{report.embedded} texts embedded"
    print(f"# indexed SciFact in {time.perf_counter() - started:.1f} s ({state})", flush=True)
    return settings


def _http_rows(
    settings: Settings, questions: list[str], clients: list[int], seconds: float, k: int
) -> list[list[object]]:
    server, base = start_server(settings)
    try:
        _load(base, questions, 1, 3.0, k)  # warm-up
        rows: list[list[object]] = []
        for count in clients:
            server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
            latencies, elapsed = _load(base, questions, count, seconds, k)
            server_cpu = cpu_seconds(server.pid) - server_cpu
            client_cpu = time.process_time() - client_cpu
            rss, peak = memory_mib(server.pid)
            rows.append(
                [
                    count,
                    len(latencies),
                    len(latencies) / elapsed,
                    percentile(latencies, 50),
                    percentile(latencies, 99),
                    server_cpu * 1000 / len(latencies),
                    client_cpu * 1000 / len(latencies),
                    rss,
                    peak,
                ]
            )
            print(f"# {count} clients done", flush=True)
        return rows
    finally:
        stop_server(server)


def _load(
    base: str, questions: list[str], clients: int, seconds: float, k: int
) -> tuple[list[float], float]:
    """`clients` threads ask questions in turn for `seconds`; returns latencies (ms), elapsed."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(offset: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            position = offset
            while time.perf_counter() < deadline:
                question = questions[position % len(questions)]
                position += clients
                started = time.perf_counter()
                response = http.get("/api/ask", params={"q": question, "k": k})
                took = (time.perf_counter() - started) * 1000
                with lock:
                    if response.status_code == 200:
                        latencies.append(took)
                    else:
                        failures.append(f"{response.status_code} {response.text[:200]}")

    elapsed = run_clients(client, clients)
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, first: {failures[0]}")
    return latencies, elapsed


if __name__ == "__main__":
    main()
