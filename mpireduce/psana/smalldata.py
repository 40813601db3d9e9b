"""psana2's ``ds.smalldata(...)``: per-event "small data" and summaries in HDF5.

``smd.event(evt, {...}, key=value)`` records values for an event; rows are sent (with
SRV ranks) or written (without) every ``batch_size`` events. Writers are the SRV ranks
(``PS_SRV_NODES > 0``) or else each worker; each writes ``{stem}_part{k}.h5``. At
``smd.done()`` (every rank must call it) the first worker writes ``filename`` itself: a
master whose datasets are HDF5 virtual datasets over the parts (rows in part order, not
sorted), plus the summaries and ``/_parts/{file,sha256,rows}``. ``smd.summary`` is True on
worker ranks; ``smd.sum/max/min`` reduce over workers onto the first one (``None``
elsewhere; unchanged on one rank), tolerating workers that pass ``None``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import h5py
import numpy as np

from .distribute import Roles
from .smdfile import PARTS_GROUP, PartWriter, fill_value, flatten

LOG = logging.getLogger("mpireduce.psana")
SMD_TAG = 6100


class SmallData:
    """Per-event small data and summaries, written as part files plus a VDS master."""

    def __init__(self, roles: Roles, filename: Optional[str] = None, batch_size: int = 1000,
                 cache_size: Optional[int] = None, callbacks: Sequence[Callable] = (), swmr_mode: bool = False):
        self._roles = roles
        self._filename = None if filename is None else Path(filename)
        self._batch_size = max(1, int(batch_size))
        self._callbacks = list(callbacks)
        self._cache: List[tuple] = []
        self._summary: Dict[str, Any] = {}
        self._part: Optional[PartWriter] = None
        self._closed = False
        if roles.kind == "srv":
            self._serve()

    # -- per-event data ------------------------------------------------------------
    def event(self, evt, *dicts, align_group: Optional[str] = None, **kwargs) -> None:
        """Record values for ``evt`` (an event or its timestamp); nested dicts use ``/``."""
        if not self._roles.is_worker():
            return
        values: Dict[str, Any] = {}
        for data in (*dicts, kwargs):
            values.update(flatten(data))
        for callback in self._callbacks:
            callback(values)
        timestamp = int(evt) if isinstance(evt, (int, np.integer)) else int(evt.timestamp)
        self._cache.append((align_group or "", timestamp, values))
        if len(self._cache) >= self._batch_size:
            self._flush()

    def _flush(self) -> None:
        """Send the cached rows to this worker's server, or write them to its part."""
        if not self._cache or self._filename is None:
            self._cache = []
            return
        server = self._roles.srv_of(self._roles.rank) if self._roles.comm else None
        if server is not None:
            self._roles.comm.send(self._cache, dest=server, tag=SMD_TAG)
        else:
            self._write(self._cache)
        self._cache = []

    def _write(self, cache: List[tuple]) -> None:
        """Append rows to this rank's part file (opened on first use)."""
        if self._part is None:
            self._part = PartWriter(self._part_path())
        tables: Dict[str, list] = {}
        for table, timestamp, values in cache:
            tables.setdefault(table, []).append((timestamp, values))
        for table, rows in tables.items():
            self._part.append(table, rows)

    def _part_path(self) -> Path:
        """``{stem}_part{k}.h5``, k = this writer's index among the writers."""
        roles = self._roles
        writers = roles.srv_ranks or roles.bd_ranks
        index = writers.index(roles.rank) if roles.comm else 0
        return self._filename.with_name(f"{self._filename.stem}_part{index}.h5")

    def _serve(self) -> None:
        """SRV rank: write what its workers send until each has said it is done."""
        from mpi4py import MPI

        roles = self._roles
        pending = {bd for bd in roles.bd_ranks if roles.srv_of(bd) == roles.rank}
        status = MPI.Status()
        while pending:
            cache = roles.comm.recv(source=MPI.ANY_SOURCE, tag=SMD_TAG, status=status)
            if cache is None:
                pending.discard(status.Get_source())
            else:
                self._write(cache)

    # -- summaries -----------------------------------------------------------------
    @property
    def summary(self) -> bool:
        """True where summary data and reductions belong (worker ranks)."""
        return self._roles.is_worker()

    def sum(self, value, inplace: bool = False):
        """Sum over workers (result on the first worker)."""
        return self._reduce(value, "sum", inplace)

    def max(self, value, inplace: bool = False):
        """Maximum over workers (result on the first worker)."""
        return self._reduce(value, "max", inplace)

    def min(self, value, inplace: bool = False):
        """Minimum over workers (result on the first worker)."""
        return self._reduce(value, "min", inplace)

    def _reduce(self, value, op: str, inplace: bool):
        """A reduction robust to workers whose value is None."""
        roles = self._roles
        if roles.comm is None:
            return value
        if roles.kind != "bd":
            return None
        from .reduce import reduce_to_root

        return reduce_to_root(roles.client_comm, value, op, inplace)

    def save_summary(self, *dicts, **kwargs) -> None:
        """Keep summary values for the master file (only the first worker's are kept)."""
        if self._filename is None:
            LOG.warning("smalldata: no filename given, summary not saved")
            return
        if self._roles.comm is not None and self._roles.rank != self._roles.bd_ranks[0]:
            return
        for data in (*dicts, kwargs):
            self._summary.update(flatten(data))

    # -- the end -------------------------------------------------------------------
    def done(self) -> None:
        """Flush, close the parts and write the master (every rank must call this)."""
        if self._closed:
            return
        self._closed = True
        roles = self._roles
        if roles.is_worker():
            self._flush()
            if roles.comm is not None and roles.srv_of(roles.rank) is not None:
                roles.comm.send(None, dest=roles.srv_of(roles.rank), tag=SMD_TAG)
        info = self._part.close() if self._part is not None else None
        infos = [info] if roles.comm is None else roles.comm.gather(info, root=roles.bd_ranks[0])
        if self._filename is not None and roles.rank == roles.bd_ranks[0]:
            write_master(self._filename, [i for i in infos if i], self._summary)
        if roles.comm is not None:
            roles.comm.Barrier()


def write_master(path: Path, parts: List[Dict[str, Any]], summary: Dict[str, Any]) -> None:
    """The master file: one virtual dataset per dataset of the parts, plus summaries."""
    with h5py.File(path, "w") as master:
        names: Dict[str, Dict[str, Any]] = {}
        for part in parts:
            for name, spec in part["datasets"].items():
                names.setdefault(name, spec)
        for name, spec in names.items():
            _virtual_dataset(master, name, spec, parts)
        for name, value in summary.items():
            master[name] = value
        group = master.create_group(PARTS_GROUP)
        group["file"] = np.array([p["file"] for p in parts], dtype=h5py.string_dtype())
        group["sha256"] = np.array([p["sha256"] for p in parts], dtype=h5py.string_dtype())
        group["rows"] = np.array([sum(p["tables"].values()) for p in parts], dtype=np.int64)


def _virtual_dataset(master: h5py.File, name: str, spec: Dict[str, Any], parts: List[Dict[str, Any]]) -> None:
    """Concatenate ``name`` of every part along axis 0 (fill where a part lacks it)."""
    dtype = np.dtype(spec["dtype"])
    rest = tuple(spec["shape"][1:])

    def length(part):  # rows this part occupies in the dataset
        if spec["var"]:
            return part["datasets"].get(name, {"shape": (0,)})["shape"][0]
        return part["tables"].get(spec["table"], 0)

    total = sum(length(p) for p in parts)
    layout = h5py.VirtualLayout(shape=(total, *rest), dtype=dtype)
    offset = 0
    for part in parts:
        n = length(part)
        if name in part["datasets"] and n:
            layout[offset : offset + n] = h5py.VirtualSource(part["file"], name, shape=(n, *rest), dtype=dtype)
        offset += n
    fill = 0 if spec.get("len") else fill_value(dtype)
    master.create_virtual_dataset(name, layout, fillvalue=fill)
