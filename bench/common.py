"""Shared helpers of the benchmark scripts: data sets, the indexed texts, tables, percentiles."""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from indexer.build import passage_embedding_text  # noqa: E402
from indexer.chunking import ChunkingOptions, chunk_document  # noqa: E402
from indexer.embedding import BACKENDS, Embedder  # noqa: E402
from indexer.evaluation import EvalSet, load_eval_set, load_squad, write_documents  # noqa: E402
from indexer.loaders import discover_files, load_document  # noqa: E402
from indexer.onnx_export import cpu_description  # noqa: E402
from indexer.settings import Settings  # noqa: E402

DEFAULT_SEEDS = ROOT / "seeds"
DEFAULT_SCIFACT = Path("/work/shared/eval/scifact")


def scifact(folder: Path) -> EvalSet:
    """The BEIR SciFact folder (corpus, queries, train qrels) as an eval set."""
    return load_eval_set(folder, "beir", "train")


def add_question_options(parser: argparse.ArgumentParser) -> None:
    """`--scifact` and `--squad`: where a script's questions come from."""
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="BEIR SciFact folder")
    parser.add_argument(
        "--squad",
        type=Path,
        help="ask every fifth question of this SQuAD file instead of SciFact's claims (needs "
        "--index: that file's eval index)",
    )


def asked_questions(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[EvalSet, list[str]]:
    """The eval set and the questions to ask, as `add_question_options` chose."""
    if args.squad is None:
        eval_set = scifact(args.scifact)
        return eval_set, [question.text for question in eval_set.questions]
    if args.index is None:
        parser.error("--squad needs the --index its questions are asked of")
    eval_set = load_squad(args.squad)
    return eval_set, [question.text for question in eval_set.questions[::5]]


def write_corpus(eval_set: EvalSet, folder: Path, limit: int | None = None) -> int:
    """Write the first `limit` documents of the set as files; return how many."""
    chosen = eval_set.documents[:limit] if limit else eval_set.documents
    subset = EvalSet(
        eval_set.name,
        eval_set.format,
        eval_set.source,
        eval_set.level,
        list(chosen),
        [],
    )
    write_documents(subset, folder)
    return len(chosen)


def indexed_texts(folder: Path, embedder: Embedder) -> tuple[list[str], list[str]]:
    """The passage and sentence texts an index of `folder` embeds, chunked as the indexer does."""
    options = ChunkingOptions(max_tokens=embedder.window_tokens, overlap=1)
    passages: list[str] = []
    sentences: list[str] = []
    for path in discover_files(folder):
        document = load_document(path, folder, 20 * 1024 * 1024)
        for passage in chunk_document(document, options, embedder.count_tokens).passages:
            passages.append(passage_embedding_text(passage))
            sentences.extend(sentence.text for sentence in passage.sentences)
    return passages, sentences


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], markdown: bool) -> None:
    """Print rows as an aligned text table, or as a Markdown table."""
    cells = [[_cell(value) for value in row] for row in rows]
    if markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "|".join(" --- " for _ in headers) + "|")
        for row in cells:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def machine_note() -> str:
    """One line about the machine and its current load, printed above every table."""
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"# {cpu_description()}; load average {load}"


def parse_backends(value: str) -> list[str]:
    chosen = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BACKENDS]
    if unknown:
        raise SystemExit(f"unknown backend(s): {', '.join(unknown)}; use {', '.join(BACKENDS)}")
    return chosen


def start_server(settings: Settings) -> tuple[subprocess.Popen[str], str]:
    """`paracite serve` over `settings.index` in its own process on a free loopback port.

    Returns the process and its base URL once /healthz answers 200.
    """
    port = free_port()
    environment = {
        **os.environ,
        "PARACITE_INDEX": str(settings.index),
        "PARACITE_MODEL": settings.model,
        "PARACITE_BACKEND": settings.backend,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(server, base)
    except BaseException:
        stop_server(server)
        raise
    return server, base


def stop_server(server: subprocess.Popen[str]) -> None:
    server.terminate()
    server.wait(timeout=30)


def wait_until_ready(server: subprocess.Popen[str], base: str) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            error = server.stderr.read() if server.stderr else ""
            raise SystemExit(f"the server exited ({server.returncode}):\n{error[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not become ready in 300 s")


def run_clients(client: Callable[[int], None], clients: int) -> float:
    """Run `client(0)` ... `client(clients - 1)` in threads at once; the seconds until all end."""
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def memory_mib(pid: int) -> tuple[float, float]:
    """The process's resident memory now and at its peak (VmRSS, VmHWM) in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
