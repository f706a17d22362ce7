"""Reading files in a worker process, so no one file can hang, exhaust or crash a run.

`IsolatedReader.load(path)` hands the path to a long-lived worker (`indexer.loaders.worker`,
which imports the loaders only, not the embedding model) and returns the `Document` it
loaded. The worker runs under a memory limit; a file that takes longer than the time limit
gets the worker killed (a fresh one starts for the next file). Either way the file is
reported as skipped with the reason, never an exception that stops the run.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

from indexer.errors import ParaciteError, UnsupportedFile
from indexer.models import Document

# The worker's address-space limit: a file that needs more (a decompression bomb, say)
# fails with MemoryError there, and the index run stays under 1 GB per process.
MAX_READER_MEMORY = 900 * 1024 * 1024
# numpy (imported with the text helpers) starts a BLAS thread per core, each reserving
# address space that would count against the worker's limit on a many-core machine.
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STARTUP_SECONDS = 120.0  # importing the loaders; generous for a machine under load
_HEADER = struct.Struct(">Q")


def too_large(memory_limit: int) -> str:
    """The skip reason of a file that needs more memory than the reader may use."""
    return f"too large when decompressed (needs over {memory_limit >> 20} MB of memory to read)"


class FileReader(Protocol):
    """Turns one file into a `Document`, raising `UnsupportedFile` with the reason it can't."""

    def load(self, path: Path) -> Document: ...

    def close(self) -> None: ...


def worker_command() -> list[str]:
    """How the worker process is started: this Python, without the current folder on sys.path."""
    return [sys.executable, "-P", "-m", "indexer.loaders.worker"]


class IsolatedReader:
    """A `FileReader` that loads each file in a worker process, with a per-file time limit."""

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        max_seconds: float,
        *,
        memory_limit: int = MAX_READER_MEMORY,
        command: Sequence[str] | None = None,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.memory_limit = memory_limit
        self.command = list(command) if command is not None else worker_command()
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    def __enter__(self) -> IsolatedReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def load(self, path: Path) -> Document:
        """The file loaded by the worker; `UnsupportedFile` if it fails, crashes or is too slow."""
        process = self._worker()
        request = (os.fsencode(path), os.fsencode(self.root), self.max_bytes)
        deadline = time.monotonic() + self.max_seconds
        try:
            write_frame(_pipe(process.stdin), request)
            status, value = read_frame(_pipe(process.stdout), deadline)
        except TimeoutError:
            self._stop(kill=True)
            raise UnsupportedFile(
                f"took longer than {self.max_seconds:g} s to read (PARACITE_MAX_FILE_SECONDS)"
            ) from None
        except (OSError, EOFError, pickle.UnpicklingError):
            self._stop(kill=True)
            raise UnsupportedFile(self._death_reason(process)) from None
        if status == "ok" and isinstance(value, Document):
            return value
        raise UnsupportedFile(str(value))

    def close(self) -> None:
        """Stop the worker (it exits when its input closes)."""
        self._stop(kill=False)

    def _worker(self) -> subprocess.Popen[bytes]:
        if self._process is not None:
            return self._process
        self._stderr = tempfile.TemporaryFile()
        process = subprocess.Popen(
            [*self.command, str(self.memory_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, **ONE_THREAD},
        )
        self._process = process
        try:
            ready = read_frame(_pipe(process.stdout), time.monotonic() + STARTUP_SECONDS)
        except (TimeoutError, OSError, EOFError, pickle.UnpicklingError):
            ready = None
        if ready != ("ready", None):
            detail = self._stderr_tail()
            self._stop(kill=True)
            raise ParaciteError(f"the file reader process could not start: {detail}")
        return process

    def _death_reason(self, process: subprocess.Popen[bytes]) -> str:
        code = process.poll()
        if code is not None and code < 0:
            return f"the reader process crashed on this file (signal {-code})"
        return f"the reader process crashed on this file (exit status {code})"

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return "no output"
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def _stop(self, *, kill: bool) -> None:
        process, self._process = self._process, None
        if process is not None:
            if kill:
                process.kill()
            with contextlib.suppress(OSError):
                _pipe(process.stdin).close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            _pipe(process.stdout).close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    assert stream is not None, "the worker's pipes are opened with it"
    return stream


def write_frame(stream: IO[bytes], value: Any) -> None:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def read_frame(stream: IO[bytes], deadline: float | None = None) -> Any:
    """One pickled value; EOFError if the stream ends, TimeoutError after `deadline`."""
    header = _read_exact(stream, _HEADER.size, deadline)
    (length,) = _HEADER.unpack(header)
    return pickle.loads(_read_exact(stream, length, deadline))


def _read_exact(stream: IO[bytes], size: int, deadline: float | None) -> bytes:
    descriptor = stream.fileno()
    parts: list[bytes] = []
    remaining = size
    while remaining:
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if timeout <= 0 or not select.select([descriptor], [], [], timeout)[0]:
                raise TimeoutError
        chunk = os.read(descriptor, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)
