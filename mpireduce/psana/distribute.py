"""How psana2 splits a run's events over MPI ranks, reproduced with mpi4py.

Ranks, as psana2 assigns them (``PS_EB_NODES`` default 1, ``PS_SRV_NODES`` default 0)::

    rank 0                      smd0: reads the run's index, hands out chunks on request
    ranks 1 .. PS_EB_NODES      event builders (EB): split chunks into batches of batch_size
    the last PS_SRV_NODES       smalldata servers (SRV): write smalldata part files
    the rest                    big-data workers (BD): iterate events, run the user's code

``n_workers = size - PS_EB_NODES - PS_SRV_NODES - 1``. A worker asks its EB (BD i goes
to EB i mod PS_EB_NODES) for a batch whenever it has finished the previous one, so a slow
rank never holds the others; an EB asks smd0 for ``PS_SMD_N_EVENTS`` events at a time.
With no EB ranks, workers ask smd0 directly. On one rank everything runs in-process.
Each dispatch round uses its own message tags, so rounds (runs, steps) never mix.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Sequence

from ..errors import ConfigError

REQUEST_TAG_BASE = 7000
MAX_ROUNDS = 1000


def world_comm() -> Optional[Any]:
    """``MPI.COMM_WORLD`` when mpi4py is importable and more than one rank runs, else None."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def self_comm() -> Optional[Any]:
    """``MPI.COMM_SELF`` (one rank on its own) when mpi4py is importable, else None."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_SELF


@dataclass
class Roles:
    """The role of every rank, from the communicator size and the PS_* variables."""

    comm: Optional[Any]
    n_eb: int = 0
    n_srv: int = 0
    client_comm: Optional[Any] = field(default=None, repr=False)

    @classmethod
    def create(cls, comm: Optional[Any]) -> "Roles":
        """Assign roles (a collective call: every rank must make it)."""
        if comm is None or comm.Get_size() == 1:
            return cls(None)
        size = comm.Get_size()
        n_srv = int(os.environ.get("PS_SRV_NODES", "0"))
        n_eb = min(int(os.environ.get("PS_EB_NODES", "1")), max(0, size - 2 - n_srv))
        if size - 1 - n_eb - n_srv < 1:
            raise ConfigError(f"{size} MPI ranks leave no worker with PS_SRV_NODES={n_srv}: "
                              "run with more ranks or fewer PS_SRV_NODES")
        roles = cls(comm, n_eb, n_srv)
        roles.client_comm = comm.Split(0 if roles.kind == "bd" else 1, comm.Get_rank())
        return roles

    @property
    def rank(self) -> int:
        return 0 if self.comm is None else self.comm.Get_rank()

    @property
    def size(self) -> int:
        return 1 if self.comm is None else self.comm.Get_size()

    @property
    def bd_ranks(self) -> List[int]:
        """World ranks of the big-data workers."""
        return list(range(1 + self.n_eb, self.size - self.n_srv)) if self.comm else [0]

    @property
    def eb_ranks(self) -> List[int]:
        return list(range(1, 1 + self.n_eb))

    @property
    def srv_ranks(self) -> List[int]:
        return list(range(self.size - self.n_srv, self.size)) if self.comm else []

    @property
    def kind(self) -> str:
        """``serial``, ``smd0``, ``eb``, ``bd`` or ``srv``."""
        if self.comm is None:
            return "serial"
        if self.rank == 0:
            return "smd0"
        if self.rank in self.eb_ranks:
            return "eb"
        return "srv" if self.rank in self.srv_ranks else "bd"

    def is_worker(self) -> bool:
        """True where the user's per-event code runs (BD ranks, or the single rank)."""
        return self.kind in ("serial", "bd")

    def server_of(self, bd_rank: int) -> int:
        """The rank that hands batches to worker ``bd_rank``."""
        if not self.n_eb:
            return 0
        return self.eb_ranks[self.bd_ranks.index(bd_rank) % self.n_eb]

    def clients_of(self, rank: int) -> List[int]:
        """The workers (or EBs) that ask ``rank`` for events."""
        if rank == 0 and self.n_eb:
            return self.eb_ranks
        return [bd for bd in self.bd_ranks if self.server_of(bd) == rank]

    def srv_of(self, bd_rank: int) -> Optional[int]:
        """The smalldata server of worker ``bd_rank`` (None without SRV ranks)."""
        if not self.n_srv:
            return None
        return self.srv_ranks[self.bd_ranks.index(bd_rank) % self.n_srv]


class Dispatcher:
    """Hands out event indices; every rank must call :meth:`events` for every round."""

    def __init__(self, roles: Roles):
        self.roles = roles
        self._round = 0

    def events(self, items: Sequence[int], batch_size: int) -> Iterator[int]:
        """The items this rank should process (none on smd0, EB and SRV ranks)."""
        self._round += 1
        if self.roles.comm is None:
            yield from items
            return
        tag = REQUEST_TAG_BASE + 2 * (self._round % MAX_ROUNDS)
        comm, kind, rank = self.roles.comm, self.roles.kind, self.roles.rank
        if kind == "smd0":
            chunk = int(os.environ.get("PS_SMD_N_EVENTS", "20000")) if self.roles.n_eb else batch_size
            _serve(comm, list(items), self.roles.clients_of(0), max(1, chunk), tag)
        elif kind == "eb":
            _relay(comm, self.roles.clients_of(rank), max(1, batch_size), tag)
        elif kind == "bd":
            yield from _pull(comm, self.roles.server_of(rank), tag)


def _receive_request(comm, tag: int):
    """(wants_more, source) of the next request sent with ``tag``."""
    from mpi4py import MPI

    status = MPI.Status()
    wants = comm.recv(source=MPI.ANY_SOURCE, tag=tag, status=status)
    return wants, status.Get_source()


def _serve(comm, items: List[int], clients: List[int], chunk: int, tag: int) -> None:
    """smd0: answer requests with the next ``chunk`` items until every client has had an end."""
    pending, position = set(clients), 0
    while pending:
        wants, source = _receive_request(comm, tag)
        if not wants:
            pending.discard(source)
            continue
        part = items[position : position + chunk]
        position += len(part)
        comm.send(part, dest=source, tag=tag + 1)
        if not part:
            pending.discard(source)


def _relay(comm, clients: List[int], batch_size: int, tag: int) -> None:
    """EB: fetch chunks from smd0 when empty; answer each worker with one batch."""
    queue: deque = deque()
    upstream_done, pending = False, set(clients)
    while pending:
        wants, source = _receive_request(comm, tag)
        if not wants:
            pending.discard(source)
            continue
        while not queue and not upstream_done:
            comm.send(True, dest=0, tag=tag)
            chunk = comm.recv(source=0, tag=tag + 1)
            queue.extend(chunk)
            upstream_done = not chunk
        batch = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
        comm.send(batch, dest=source, tag=tag + 1)
        if not batch:
            pending.discard(source)
    if not upstream_done:
        comm.send(False, dest=0, tag=tag)


def _pull(comm, server: int, tag: int) -> Iterator[int]:
    """BD: ask ``server`` for batches until an empty one; tell it when leaving early."""
    finished = False
    try:
        while True:
            comm.send(True, dest=server, tag=tag)
            batch = comm.recv(source=server, tag=tag + 1)
            if not batch:
                finished = True
                return
            yield from batch
    finally:
        if not finished:
            comm.send(False, dest=server, tag=tag)
