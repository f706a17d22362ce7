"""The `paracite` command line: index, ask, search, info, serve."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import click
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from indexer.embedding import BACKENDS
from indexer.errors import ParaciteError
from indexer.models import AskResult, Hit, IndexReport
from indexer.retrieval import MAX_K, MAX_OFFSET, MODES, Mode, Scope, Searcher
from indexer.settings import PassageVectors, SentenceVectors, Settings
from indexer.short_answer import ShortAnswer
from indexer.store import require_generation

if TYPE_CHECKING:
    from indexer.watch import FolderWatch

console = Console()
errors = Console(stderr=True)


class ParaciteGroup(click.Group):
    """Turns domain errors into a one-line message and exit status 1, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ParaciteError as error:
            errors.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
            sys.exit(1)
        except ValidationError as error:  # a PARACITE_* setting (or a .env line) is invalid
            for problem in error.errors():
                name = f"PARACITE_{'_'.join(map(str, problem['loc'])).upper()}"
                given = problem.get("input")
                errors.print(
                    f"[bold red]error:[/] {name}={escape(repr(given))}: {escape(problem['msg'])}",
                    soft_wrap=True,
                )
            sys.exit(2)
        except KeyboardInterrupt:
            errors.print("[yellow]interrupted[/]; the previous index is untouched")
            sys.exit(130)


index_option = click.option(
    "--index",
    "index_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Index folder (default: PARACITE_INDEX or ./.paracite).",
)
model_option = click.option(
    "--model",
    help="sentence-transformers model name or path (default: PARACITE_MODEL or the bundled "
    "all-MiniLM-L6-v2).",
)
backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    help="Embedding backend (default: PARACITE_BACKEND or "
    f"{Settings.model_fields['backend'].default}).",
)

sentence_vectors_option = click.option(
    "--sentence-vectors",
    type=click.Choice(get_args(SentenceVectors)),
    help="standalone (each sentence embedded alone) or in-context (from the passage's run: "
    "indexing about 1.7x faster, rankings slightly worse). Default: PARACITE_SENTENCE_VECTORS "
    f"or {Settings.model_fields['sentence_vectors'].default}.",
)

passage_vectors_option = click.option(
    "--passage-vectors",
    type=click.Choice(get_args(PassageVectors)),
    help="standalone (each passage run through the model), pooled (from its sentences' and "
    "title's vectors: the model reads each token once; rankings of Wikipedia-like text a little "
    "worse) or joined (the model's upper layers read its sentences' runs together: faster "
    "indexing, rankings close to standalone). Default: PARACITE_PASSAGE_VECTORS "
    f"or {Settings.model_fields['passage_vectors'].default}.",
)


def question_options(command: Callable[..., None]) -> Callable[..., None]:
    """The arguments shared by `ask` and `search`."""
    for option in reversed(
        [
            click.argument("question"),
            click.option(
                "-k", default=5, show_default=True, type=click.IntRange(1, MAX_K), help="Passages."
            ),
            click.option("--mode", type=click.Choice(MODES), default="hybrid", show_default=True),
            click.option("--doc", help="Search this document only (a doc id)."),
            click.option("--folder", help="Search this folder only, subfolders included."),
            click.option(
                "--format", "fmt", help="Search this format only (text, markdown, html, pdf, docx)."
            ),
            click.option(
                "--offset",
                default=0,
                show_default=True,
                type=click.IntRange(0, MAX_OFFSET),
                help="Passages to skip (the next page).",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
            index_option,
        ]
    ):
        command = option(command)
    return command


def _settings(**overrides: object) -> Settings:
    return Settings().with_overrides(**overrides)


@click.group(cls=ParaciteGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="paracite")
def main() -> None:
    """paracite: ask questions of your documents and get answers cited to the paragraph.

    \b
    Quick start:
      paracite index seeds/
      paracite ask "Why does Kim Jong Un distrust the United States?"
      paracite serve
    """


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@index_option
@model_option
@backend_option
@sentence_vectors_option
@passage_vectors_option
@click.option("--rebuild", is_flag=True, help="Start from scratch instead of updating.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars; print the summary only.")
@click.option(
    "--watch",
    is_flag=True,
    help="After indexing, keep watching FOLDER and re-index whenever its files change "
    "(one line per run; Ctrl-C stops).",
)
def index(
    folder: Path,
    index_dir: Path | None,
    model: str | None,
    backend: str | None,
    sentence_vectors: str | None,
    passage_vectors: str | None,
    rebuild: bool,
    quiet: bool,
    watch: bool,
) -> None:
    """Index FOLDER: new and changed files are embedded, deleted ones dropped."""
    settings = _settings(
        index=index_dir,
        model=model,
        backend=backend,
        sentence_vectors=sentence_vectors,
        passage_vectors=passage_vectors,
    )
    _index_now(folder, settings, quiet=quiet, rebuild=rebuild)
    if watch:
        console.print(f"watching {escape(str(folder))} for changes (Ctrl-C stops)")
        _folder_watch(folder, settings).run_until_interrupted()


def _index_now(folder: Path, settings: Settings, *, quiet: bool, rebuild: bool = False) -> None:
    from indexer.build import build_index

    with _ProgressBars(enabled=not quiet and console.is_terminal) as progress:
        report = build_index(folder, settings, rebuild=rebuild, progress=progress)
    _print_report(report, settings.index)


def _folder_watch(folder: Path, settings: Settings) -> FolderWatch:
    """A watch on FOLDER that logs one line per re-indexing run."""
    from indexer.watch import FolderWatch, describe_run

    def report(run: IndexReport) -> None:
        console.print(f"[green]{_clock()}[/] {escape(describe_run(run))}")
        for file in run.files:
            if file.status == "skipped":
                console.print(f"  [yellow]skipped[/] {escape(file.path)}: {escape(file.reason)}")

    def failed(error: ParaciteError) -> None:
        errors.print(f"[bold red]{_clock()} error:[/] {escape(str(error))}", soft_wrap=True)

    return FolderWatch(folder, settings, report, failed)


def _clock() -> str:
    return time.strftime("%H:%M:%S")


@main.command()
@question_options
def ask(question: str, as_json: bool, index_dir: Path | None, **options: Any) -> None:
    """Answer QUESTION with the best sentence and the passages it comes from."""
    result = _open(index_dir).ask(question, **_question(**options))
    _print_result(result, as_json, with_answer=True)


@main.command()
@question_options
def search(question: str, as_json: bool, index_dir: Path | None, **options: Any) -> None:
    """List the passages that best match QUESTION."""
    result = _open(index_dir).search(question, **_question(**options))
    _print_result(result, as_json, with_answer=False)


def _question(
    k: int, mode: Mode, doc: str | None, folder: str | None, fmt: str | None, offset: int
) -> dict[str, Any]:
    """The search options of `ask` and `search`, as Searcher takes them."""
    return {"k": k, "mode": mode, "scope": Scope(doc, folder, fmt), "offset": offset}


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@index_option
def info(as_json: bool, index_dir: Path | None) -> None:
    """Show what the index holds: model, counts, when it was built (after checking its files)."""
    from indexer.store import check_index

    data = check_index(_settings(index=index_dir).index).to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, box=None)
    for key, value in data.items():
        table.add_row(f"[bold]{key}[/]", escape(str(value)))
    console.print(table)


@main.command()
@index_option
@click.option("--host", help="Address to listen on (default: PARACITE_HOST or 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port (default: PARACITE_PORT or 8000)."
)
@click.option(
    "--watch",
    "watch_folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Index this folder first, then re-index it whenever its files change; the server "
    "answers from each new index without a restart.",
)
def serve(
    index_dir: Path | None, host: str | None, port: int | None, watch_folder: Path | None
) -> None:
    """Serve the web pages, the JSON API and the widget; follows the index as it is rebuilt."""
    import uvicorn

    from server.app import create_app, open_live_index
    from server.serving import listen, uvicorn_config

    settings = _settings(index=index_dir, host=host, port=port)
    watcher = None
    if watch_folder is not None:
        _index_now(watch_folder, settings, quiet=False)
        watcher = _folder_watch(watch_folder, settings)
    # Opened and bound here, not in the app's lifespan, so that a broken index or a busy
    # port is a one-line error before anything says it is serving.
    require_generation(settings.index)  # before the note below, and before models load
    _note_reader_export(settings)
    live = open_live_index(settings)
    try:
        listener = listen(settings.host, settings.port)
        app = create_app(settings, live=live)
        server = uvicorn.Server(uvicorn_config(app, settings.host, settings.port))
        if watcher is not None:
            watcher.start()
        server.run(sockets=[listener])
    finally:
        if watcher is not None:
            watcher.stop()
        live.close()
    if not server.started:
        sys.exit(1)


@main.command("eval")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["squad", "beir"]),
    help="Set format (default: squad for a JSON file, beir for a folder).",
)
@click.option("--mode", type=click.Choice([*MODES, "all"]), default="hybrid", show_default=True)
@click.option("--split", default="test", show_default=True, help="BEIR qrels split.")
@click.option("--limit", type=click.IntRange(min=1), help="Ask only the first N questions.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report to FILE (JSON, or a Markdown summary if FILE ends in .md).",
)
@click.option(
    "--cache",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where eval indexes and their vectors are kept (default: ~/.cache/paracite/eval).",
)
@click.option(
    "--details",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one JSON line per question and mode to FILE (rankings, answers).",
)
@click.option(
    "--reuse-index",
    is_flag=True,
    help="Keep the cached eval index if the documents are unchanged (default: re-chunk with "
    "the current code; vectors always come from the cache).",
)
@click.option(
    "--withhold-gold",
    is_flag=True,
    help="SQuAD: also ask each question with its gold paragraph withheld (the article is "
    "there, the answer is not) and report how often an answer is still offered.",
)
@model_option
@backend_option
@sentence_vectors_option
@passage_vectors_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def eval_command(
    path: Path,
    fmt: str | None,
    mode: str,
    split: str,
    limit: int | None,
    as_json: bool,
    output: Path | None,
    cache_dir: Path | None,
    details: Path | None,
    reuse_index: bool,
    withhold_gold: bool,
    model: str | None,
    backend: str | None,
    sentence_vectors: str | None,
    passage_vectors: str | None,
    quiet: bool,
) -> None:
    """Evaluate retrieval on a SQuAD file or a BEIR folder at PATH, indexed from scratch."""
    from indexer import evaluation

    eval_set = evaluation.load_eval_set(path, fmt, split)  # type: ignore[arg-type]
    settings = _settings(
        model=model,
        backend=backend,
        sentence_vectors=sentence_vectors,
        passage_vectors=passage_vectors,
    )
    index_dir = evaluation.workspace_for(
        eval_set, settings, cache_dir or evaluation.default_cache_dir()
    )
    settings = settings.with_overrides(index=index_dir)
    modes = list(MODES) if mode == "all" else [mode]
    show = not quiet and errors.is_terminal
    with _ProgressBars(enabled=show) as bars:
        report = evaluation.evaluate(
            eval_set,
            settings,
            modes,  # type: ignore[arg-type]
            limit=limit,
            reuse_index=reuse_index,
            build_progress=bars,
            question_progress=lambda: bars,
            command=" ".join(["paracite", *sys.argv[1:]]),
            withhold_gold=withhold_gold,
        )
    data = report.to_dict()
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        text = (
            evaluation.markdown_summary(data)
            if output.suffix == ".md"
            else json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        )
        output.write_text(text, encoding="utf-8")
    if details:
        details.parent.mkdir(parents=True, exist_ok=True)
        with details.open("w", encoding="utf-8") as lines:
            for row in report.details():
                lines.write(json.dumps(row, ensure_ascii=False) + "\n")
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    _print_eval(report.metric_names(), data)


def _print_eval(names: list[str], data: dict[str, Any]) -> None:
    s, index = data["dataset"], data["index"]
    console.print(
        f"[bold]{escape(s['name'])}[/] ({s['format']}): {s['documents']} documents, "
        f"{s['questions_evaluated']} of {s['questions']} questions; index "
        f"{index['passages']} passages, {index['sentences']} sentences; "
        f"build {index['build_seconds']:.1f} s ({index['embedded']} embedded)"
    )
    for warning in s["warnings"]:
        console.print(f"[yellow]warning[/] {escape(warning)}")
    table = Table()
    table.add_column("metric")
    for mode in data["modes"]:
        table.add_column(mode, justify="right")
    runs = list(data["modes"].values())
    for name in names:
        cells = [run["metrics"].get(name) for run in runs]
        table.add_row(name, *("n/a" if v is None else f"{v:.3f}" for v in cells))
    for key in ("p50", "p95"):
        table.add_row(f"latency {key} (ms)", *(f"{r['latency_ms'][key]:.1f}" for r in runs))
    table.add_row("questions/s", *(f"{r['questions_per_second'] or 0:.1f}" for r in runs))
    console.print(table)


def _open(index_dir: Path | None) -> Searcher:
    settings = _settings(index=index_dir)
    require_generation(settings.index)  # before the note below, and before models load
    _note_reader_export(settings)
    return Searcher.from_settings(settings)


def _note_reader_export(settings: Settings) -> None:
    """Say why the first question after installing waits: the reader is exported once."""
    from indexer.reader import reader_exported

    if settings.reader != "off" and not reader_exported(settings.cache_dir):
        errors.print("preparing the reader for its first use (once, about 10 s)")


def _print_result(result: AskResult, as_json: bool, with_answer: bool) -> None:
    if as_json:
        from server.schemas import AskResponse

        click.echo(AskResponse.of(result).model_dump_json(indent=2))
        return
    if with_answer:
        if result.answer:
            a = result.answer
            if a.short is not None:
                # The sentence plainly, the short answer in it in bold (and first, on its own).
                console.print(f"[bold]{escape(a.short.text)}[/]")
                sentence = _bold_short(a.text, a.short.offset, len(a.short.text))
                console.print(f"{sentence} [cyan][{a.passage}][/]", highlight=False)
            else:
                console.print(f"[bold]{escape(a.text)}[/] [cyan][{a.passage}][/]")
            console.print(
                f"[dim]— {escape(a.title)}, ¶{a.paragraph} · {a.confidence:.0%} sure[/]\n"
            )
        else:
            console.print(f"[yellow]{escape(result.no_answer_reason or '')}[/]\n")
    if not result.hits:
        console.print("[dim]No passages.[/]")
    for hit in result.hits:
        p = hit.passage
        where = f"¶{p.paragraph}" + (f" ({escape(p.section)})" if p.section else "")
        page = f", page {p.page}" if p.page else ""
        console.print(
            f"[cyan][{hit.rank}][/] [bold]{escape(p.title)}[/] — {where}{page} "
            f"[dim]{escape(p.doc_id)} · score {hit.score:.3f}[/]"
        )
        short = result.answer.short if result.answer and hit.rank == result.answer.passage else None
        console.print(_highlight(p.text, hit, short), highlight=False)
        console.print()
    console.print(f"[dim]{result.took_ms:.1f} ms[/]")


def _highlight(text: str, hit: Hit, short: ShortAnswer | None = None) -> str:
    """The passage with its answering sentence in green, the short answer in it in bold."""
    sentence = hit.best_sentence
    if sentence is None:
        return "    " + escape(text)
    marked = text[sentence.start : sentence.end]
    inner = (
        _bold_short(marked, short.offset, len(short.text)) if short is not None else escape(marked)
    )
    return (
        "    "
        + escape(text[: sentence.start])
        + "[green]"
        + inner
        + "[/]"
        + escape(text[sentence.end :])
    )


def _bold_short(sentence: str, offset: int, length: int) -> str:
    """The sentence as console markup, `sentence[offset:offset + length]` in bold."""
    end = offset + length
    return (
        escape(sentence[:offset])
        + "[bold]"
        + escape(sentence[offset:end])
        + "[/]"
        + escape(sentence[end:])
    )


def _print_report(report: IndexReport, index_dir: Path) -> None:
    if report.repaired:
        console.print(f"[yellow]repaired[/] {escape(report.repaired)}; rebuilt from the files")
    if report.up_to_date:
        console.print(
            f"[green]Index is up to date[/] ({report.count('unchanged')} files unchanged)"
        )
        return
    for file in report.files:
        if file.status == "skipped":
            console.print(f"[yellow]skipped[/] {escape(file.path)}: {escape(file.reason)}")
        elif file.reason:
            console.print(f"[yellow]warning[/] {escape(file.path)}: {escape(file.reason)}")
    counts = ", ".join(
        f"{report.count(status)} {status}"
        for status in ("added", "updated", "unchanged", "removed", "skipped")
        if report.count(status)
    )
    segments = f"{report.segments} segment{'s' if report.segments != 1 else ''}"
    if report.merged:
        segments += f" ({report.merged} merged)"
    console.print(
        f"[green]Indexed[/] into {escape(str(index_dir))}: {counts or 'no files'}; "
        f"{report.embedded} texts embedded, {report.reused_embeddings} reused; "
        f"{segments}; {report.seconds:.1f} s"
    )


class _ProgressBars:
    """Rich progress bars behind the indexer's Progress protocol."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bars = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=errors,
            transient=False,
        )
        self._task: Any = None
        self._advance: Callable[[int], None] = lambda amount: None

    def __enter__(self) -> _ProgressBars:
        if self.enabled:
            self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bars.stop()

    def start(self, description: str, total: int) -> None:
        if self.enabled:
            self._task = self._bars.add_task(description, total=total)

    def advance(self, amount: int = 1) -> None:
        if self.enabled and self._task is not None:
            self._bars.advance(self._task, amount)


if __name__ == "__main__":
    main()
