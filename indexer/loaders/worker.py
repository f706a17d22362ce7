"""The file-reading worker process (run as `python -m indexer.loaders.worker MEMORY_LIMIT`).

Reads pickled requests `(path, root, max_bytes)` on stdin and answers each with
`("ok", Document)` or `("skip", reason)` on stdout; see `indexer.loaders.isolated`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from indexer.errors import UnsupportedFile
from indexer.loaders import load_document
from indexer.loaders.isolated import read_frame, too_large, write_frame


def limit_memory(limit: int) -> None:
    """Cap this process's address space, so a memory bomb raises MemoryError here."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def die_with_parent() -> None:
    """On Linux, have the kernel kill this worker if the indexing process dies first."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def answer(path: bytes, root: bytes, max_bytes: int, memory_limit: int) -> tuple[str, Any]:
    """Load one file: ("ok", the Document) or ("skip", why not)."""
    try:
        return "ok", load_document(Path(os.fsdecode(path)), Path(os.fsdecode(root)), max_bytes)
    except UnsupportedFile as error:
        return "skip", str(error)
    except MemoryError:
        return "skip", too_large(memory_limit)
    except RecursionError:
        return "skip", "nested too deeply to read"
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the worker
        return "skip", f"could not be read ({type(error).__name__}: {error})"


def main() -> None:
    """Serve requests until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    die_with_parent()
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the replies
    memory_limit = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    limit_memory(memory_limit)
    write_frame(replies, ("ready", None))
    while True:
        try:
            path, root, max_bytes = read_frame(requests)
        except EOFError:
            return
        reply = answer(path, root, max_bytes, memory_limit)
        try:
            write_frame(replies, reply)
        except MemoryError:
            write_frame(replies, ("skip", too_large(memory_limit)))


if __name__ == "__main__":
    main()
