"""Reading ahead: files read and chunked in a thread while the indexing run embeds.

The model spends its time in onnxruntime, which lets go of the GIL, so the next files can
be read and split into passages meanwhile instead of one stage waiting for the other.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class ReadAhead(Generic[Item, Result]):
    """`read(item)` for every item, in order, done in a thread ahead of the caller.

    At most `limit` units (as `size` counts them, e.g. passages) wait to be taken, so memory
    stays bounded whatever the collection's size; one result larger than the limit still
    passes, alone. An error in `read` is raised to the caller after the results before it.
    Leaving the `with` block early stops the thread after the item it is reading.
    """

    def __init__(
        self,
        read: Callable[[Item], Result],
        items: Sequence[Item],
        size: Callable[[Result], int],
        limit: int,
    ) -> None:
        self._read = read
        self._items = items
        self._size = size
        self._limit = limit
        self._ready: deque[tuple[Item, Result, int]] = deque()
        self._waiting = 0
        self._finished = False
        self._stopped = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="paracite-read-ahead", daemon=True)

    def __enter__(self) -> ReadAhead[Item, Result]:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        if kind is None:
            self._thread.join()

    def __iter__(self) -> Iterator[tuple[Item, Result]]:
        while True:
            with self._changed:
                while not self._ready and not self._finished:
                    self._changed.wait()
                if not self._ready:
                    if self._error is not None:
                        raise self._error
                    return
                item, result, size = self._ready.popleft()
                self._waiting -= size
                self._changed.notify_all()
            yield item, result

    def _run(self) -> None:
        try:
            for item in self._items:
                with self._changed:
                    if self._stopped:
                        return
                result = self._read(item)
                size = self._size(result)
                with self._changed:
                    while (
                        not self._stopped
                        and self._waiting > 0
                        and self._waiting + size > self._limit
                    ):
                        self._changed.wait()
                    if self._stopped:
                        return
                    self._ready.append((item, result, size))
                    self._waiting += size
                    self._changed.notify_all()
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            with self._changed:
                self._error = error
        finally:
            with self._changed:
                self._finished = True
                self._changed.notify_all()
