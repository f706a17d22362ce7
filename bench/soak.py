"""Soak test: many clients against a real `paracite serve` for a while; does it hold up?

`paracite serve` (uvicorn, as users run it) runs in its own process on a free loopback port
over `--index`, or over an index of seeds/ built in a temporary folder. `--clients` threads
(keep-alive httpx connections) ask questions drawn from the collection itself (the first
sentence of every paragraph, and every heading) for `--seconds`: GET /api/ask, POST /api/ask
and GET /api/search in turn, cycling through the three modes. Every answer should be a 200.

Printed: requests, requests/s, p50/p99 latency, errors (non-200 answers and failed
connections), and the server's resident memory (RSS) before the load, after it, and at its
peak. The clients share the machine's CPUs with the server. Exit status 1 if any request
failed.

    .venv/bin/python bench/soak.py                          # 16 clients, 60 s, seeds/ index
    .venv/bin/python bench/soak.py --index DIR --clients 4 --seconds 20
"""

from __future__ import annotations

import argparse
import itertools
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from common import (
    DEFAULT_SEEDS,
    ROOT,
    cpu_seconds,
    machine_note,
    memory_mib,
    percentile,
    print_table,
    run_clients,
    start_server,
    stop_server,
)

from indexer.settings import Settings
from indexer.store import Manifest, require_generation

MODES = ("hybrid", "bm25", "dense")
MAX_QUESTION_CHARS = 200
MAX_CLIENTS = 256
MAX_SECONDS = 3600.0


@dataclass
class Tally:
    """What the clients saw, shared under a lock."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, took_ms: float) -> None:
        with self.lock:
            self.latencies_ms.append(took_ms)

    def failed(self, what: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.first_errors) < 3:
                self.first_errors.append(what)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--index", type=Path, help="an existing index (default: index seeds/)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (1-256)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load lasts")
    parser.add_argument("--k", type=int, default=5, help="passages per answer")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--clients must be 1-{MAX_CLIENTS} and --seconds 0-{MAX_SECONDS:.0f}")

    with tempfile.TemporaryDirectory(prefix="paracite-soak-") as scratch:
        index_dir = args.index or _index_seeds(Path(scratch) / "index")
        manifest = Manifest.read(require_generation(index_dir.resolve()))
        settings = Settings(index=index_dir, model=manifest.model, backend=manifest.backend)
        print(f"# index {index_dir} ({manifest.model}, {manifest.backend})", flush=True)
        server, base = start_server(settings)
        try:
            questions = collection_questions(base)
            _run(base, questions, 1, 2.0, args.k, Tally())  # warm-up: the model's first runs
            rss_before, _ = memory_mib(server.pid)
            cpu_before = cpu_seconds(server.pid)
            tally = Tally()
            elapsed = _run(base, questions, args.clients, args.seconds, args.k, tally)
            server_cpu = cpu_seconds(server.pid) - cpu_before
            rss_after, rss_peak = memory_mib(server.pid)
            alive = server.poll() is None
        finally:
            stop_server(server)

    count = len(tally.latencies_ms)
    print(machine_note())
    print(
        f"# {args.clients} clients for {elapsed:.0f} s, {len(questions)} questions from the "
        f"collection; GET /api/ask, POST /api/ask, GET /api/search in turn, k={args.k}"
    )
    print_table(
        [
            "clients",
            "requests",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "server CPU ms/req",
            "RSS before MiB",
            "RSS after MiB",
            "peak RSS MiB",
        ],
        [
            [
                args.clients,
                count,
                count / elapsed,
                percentile(tally.latencies_ms, 50),
                percentile(tally.latencies_ms, 99),
                tally.errors,
                server_cpu * 1000 / count if count else float("nan"),
                rss_before,
                rss_after,
                rss_peak,
            ]
        ],
        args.markdown,
    )
    for error in tally.first_errors:
        print(f"# error: {error}")
    if not alive:
        print("# the server died during the run")
    if tally.errors or not alive or not count:
        sys.exit(1)


def _index_seeds(index_dir: Path) -> Path:
    """Index seeds/ with the default settings, as `paracite index` does."""
    print(f"# indexing {DEFAULT_SEEDS} into {index_dir}", flush=True)
    command = ["index", str(DEFAULT_SEEDS), "--index", str(index_dir), "--quiet"]
    subprocess.run(
        [sys.executable, "-m", "server.cli", *command],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return index_dir


def collection_questions(base: str) -> list[str]:
    """The first sentence of every paragraph and every heading, read through the API."""
    questions: list[str] = []
    with httpx.Client(base_url=base, timeout=60) as http:
        for listed in http.get("/api/documents").raise_for_status().json()["documents"]:
            document = http.get(f"/api/documents/{listed['doc_id']}").raise_for_status().json()
            for block in document["blocks"]:
                first = re.split(r"(?<=[.!?])\s", block["text"].strip(), maxsplit=1)[0]
                if len(first.split()) >= 2:
                    questions.append(first[:MAX_QUESTION_CHARS])
    if not questions:
        raise SystemExit("the index holds no text to ask about")
    return questions


def _run(
    base: str, questions: list[str], clients: int, seconds: float, k: int, tally: Tally
) -> float:
    """`clients` threads ask in turn until `seconds` have passed; returns the elapsed time."""
    deadline = time.perf_counter() + seconds

    def client(offset: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            for turn in itertools.count(offset, clients):
                if time.perf_counter() >= deadline:
                    return
                question = questions[turn % len(questions)]
                mode = MODES[turn // 3 % len(MODES)]
                started = time.perf_counter()
                try:
                    if turn % 3 == 0:
                        response = http.get(
                            "/api/ask", params={"q": question, "k": k, "mode": mode}
                        )
                    elif turn % 3 == 1:
                        response = http.post("/api/ask", json={"q": question, "k": k, "mode": mode})
                    else:
                        response = http.get(
                            "/api/search", params={"q": question, "k": k, "mode": mode}
                        )
                except httpx.HTTPError as error:
                    tally.failed(f"{type(error).__name__}: {error}")
                    continue
                took_ms = (time.perf_counter() - started) * 1000
                if response.status_code == 200:
                    tally.ok(took_ms)
                else:
                    tally.failed(f"{response.status_code} {response.text[:200]}")

    return run_clients(client, clients)


if __name__ == "__main__":
    main()
