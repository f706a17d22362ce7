"""Reading ahead: files read in a thread while the caller embeds, in order, bounded."""

from __future__ import annotations

import threading

import pytest

from indexer.read_ahead import ReadAhead


def test_results_come_in_order_and_the_thread_stays_at_most_the_limit_ahead() -> None:
    read: list[int] = []
    lock = threading.Lock()

    def reading(item: int) -> int:
        with lock:
            read.append(item)
        return item * 10

    taken = []
    with ReadAhead(reading, range(50), lambda result: 1, 3) as ahead:
        for item, result in ahead:
            with lock:
                # Taken so far, three waiting, and one read but not yet handed over.
                assert len(read) <= len(taken) + 1 + 3 + 1
            taken.append((item, result))
    assert taken == [(item, item * 10) for item in range(50)]


def test_a_result_larger_than_the_limit_still_passes() -> None:
    with ReadAhead(lambda item: item, [5, 1, 7], lambda result: result, 2) as ahead:
        assert [result for _, result in ahead] == [5, 1, 7]


def test_an_error_reaches_the_caller_after_the_results_before_it() -> None:
    def reading(item: int) -> int:
        if item == 3:
            raise ValueError("unreadable")
        return item

    taken = []
    with (
        pytest.raises(ValueError, match="unreadable"),
        ReadAhead(reading, range(10), lambda result: 1, 4) as ahead,
    ):
        for _, result in ahead:
            taken.append(result)
    assert taken == [0, 1, 2]


def test_leaving_early_stops_reading() -> None:
    read: list[int] = []
    with ReadAhead(lambda item: read.append(item) or item, range(1000), lambda r: 1, 2) as ahead:
        for item, _ in ahead:
            if item == 1:
                break
    assert len(read) <= 2 + 2 + 1  # joined on leaving: nothing more is read after
    assert read == list(range(len(read)))
