"""Sharding events over ranks and gathering results on rank 0.

Events are cut into chunks of ``chunk_size`` consecutive events; chunk ``c`` belongs to
rank ``c % size``. Every rank, rank 0 included, processes its chunks. Other ranks send
each result to rank 0 without waiting (at most ``max_pending`` in flight, so memory
stays bounded); rank 0 takes results in chunk order and hands them to the writer, so
the output is the same for any number of ranks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

RESULT_TAG = 17


def chunk_bounds(chunk: int, chunk_size: int, n_events: int) -> tuple:
    """First and one-past-last global event of ``chunk``."""
    start = chunk * chunk_size
    return start, min(start + chunk_size, n_events)


def n_chunks(n_events: int, chunk_size: int) -> int:
    """Number of chunks needed for ``n_events``."""
    return -(-n_events // chunk_size)


def chunk_owner(chunk: int, size: int) -> int:
    """Rank that processes ``chunk``."""
    return chunk % size


def my_chunks(rank: int, size: int, total_chunks: int) -> range:
    """The chunks ``rank`` processes, in order."""
    return range(rank, total_chunks, size)


class ResultSender:
    """Sends results to rank 0 with non-blocking sends, keeping at most ``max_pending`` open.

    Large messages only move while the sender is inside MPI, so :meth:`progress` is
    called between events to let open sends complete while this rank computes.
    """

    def __init__(self, comm, max_pending: int):
        self.comm = comm
        self.max_pending = max_pending
        self._pending: deque = deque()

    def send(self, result) -> None:
        """Queue ``result`` for rank 0, waiting for the oldest send if too many are open."""
        self._pending.append(self.comm.isend(result, dest=0, tag=RESULT_TAG))
        while len(self._pending) > self.max_pending:
            self._pending.popleft().wait()

    def progress(self) -> None:
        """Let open sends advance; forget the ones that completed."""
        while self._pending and self._pending[0].Test():
            self._pending.popleft()

    def flush(self) -> None:
        """Wait until rank 0 has taken every result."""
        while self._pending:
            self._pending.popleft().wait()


class ResultCollector:
    """On rank 0: receives workers' results early (non-blocking), at most ``max_pending`` per worker.

    :meth:`progress` is called between rank 0's own events; :meth:`take` returns the next
    result of one worker (MPI keeps messages from one sender in order).
    """

    def __init__(self, comm, max_pending: int):
        self.comm = comm
        self.max_pending = max_pending
        self._incoming = {rank: deque() for rank in range(1, comm.Get_size())}

    def progress(self) -> None:
        """Start receiving messages that have arrived, while there is room for them."""
        for source, queue in self._incoming.items():
            for incoming in queue:
                incoming.test()
            while len(queue) < self.max_pending:
                message = self.comm.improbe(source=source, tag=RESULT_TAG)
                if message is None:
                    break
                queue.append(_Incoming(message.irecv()))

    def take(self, source: int):
        """The next result from ``source``, waiting for it if needed."""
        queue = self._incoming[source]
        if queue:
            return queue.popleft().wait()
        return self.comm.recv(source=source, tag=RESULT_TAG)


class _Incoming:
    """A pickled message being received; keeps the object once the request completes."""

    def __init__(self, request):
        self.request = request
        self.done = False
        self.value = None

    def test(self) -> None:
        if not self.done:
            self.done, self.value = self.request.test()

    def wait(self):
        if not self.done:
            self.value, self.done = self.request.wait(), True
        return self.value


def results_in_order(comm, total_chunks: int, process_own: Callable[[int], object],
                     collector: ResultCollector) -> Iterator:
    """On rank 0: yield every chunk's result in chunk order.

    Chunks of rank 0 are computed by ``process_own(chunk)`` (which should call
    ``collector.progress`` between events); the others come from their owners.
    """
    size = comm.Get_size()
    for chunk in range(total_chunks):
        owner = chunk_owner(chunk, size)
        result = process_own(chunk) if owner == 0 else collector.take(owner)
        if result.chunk != chunk:
            raise RuntimeError(f"rank {owner} sent chunk {result.chunk}, expected {chunk}")
        yield result


@dataclass
class RankStats:
    """What one rank did: counts and seconds, gathered on rank 0 at the end."""

    rank: int
    host: str
    events: int = 0
    processed: int = 0
    skipped: int = 0
    hits: int = 0
    seconds_read: float = 0.0
    seconds_detect: float = 0.0
    seconds_classify: float = 0.0
    seconds_wall: float = 0.0

    def add(self, result) -> None:
        """Count one chunk result of this rank."""
        ok = result.status == 0
        self.events += len(result)
        self.processed += int(ok.sum())
        self.skipped += int((~ok).sum())
        self.hits += int(result.hit.sum())
        self.seconds_read += result.seconds.get("read", 0.0)
        self.seconds_detect += result.seconds.get("detect", 0.0)
        self.seconds_classify += result.seconds.get("classify", 0.0)

    @property
    def frames_per_second(self) -> float:
        return self.events / self.seconds_wall if self.seconds_wall > 0 else 0.0
