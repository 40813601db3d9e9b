"""Sharding is a pure function: every event in exactly one chunk, chunks spread over ranks."""

import pytest

from mpireduce.gather import chunk_bounds, chunk_owner, my_chunks, n_chunks


@pytest.mark.parametrize("n_events, chunk_size, size", [(1, 4, 2), (10, 4, 2), (97, 8, 3), (5, 8, 4)])
def test_every_event_once(n_events, chunk_size, size):
    total = n_chunks(n_events, chunk_size)
    seen = []
    for rank in range(size):
        for c in my_chunks(rank, size, total):
            assert chunk_owner(c, size) == rank
            seen.extend(range(*chunk_bounds(c, chunk_size, n_events)))
    assert sorted(seen) == list(range(n_events))


def test_balanced():
    total = n_chunks(1000, 10)
    counts = [len(my_chunks(r, 3, total)) for r in range(3)]
    assert max(counts) - min(counts) <= 1


def test_rank_without_chunks():
    assert list(my_chunks(3, 4, n_chunks(5, 4))) == []
