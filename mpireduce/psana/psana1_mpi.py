"""psana1's ``MPIDataSource``: events split round-robin, small data gathered to rank 0.

Global event ``n`` (counted over all runs) goes to rank ``n % size``. Every rank walks
every event's index, so ``small_data(filename, gather_interval=100)`` can gather rows to
rank 0 every ``gather_interval`` global events in step on all ranks; rank 0 writes one
file (columns ``event_time`` = Unix ``seconds << 32 | ns``, plus the user's keys, missing
values back-filled). ``smldata.save(**summary)`` must be called on every rank at the end.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import h5py

from .distribute import world_comm
from .event import unix_time
from .psana1 import DataSource, Event, Run
from .reduce import reduce_to_root
from .smdfile import PartWriter, flatten

LOG = logging.getLogger("mpireduce.psana")


class MPIDataSource(DataSource):
    """A psana1 data source whose ``events()`` are split round-robin over MPI ranks."""

    def __init__(self, source: str, **kwargs):
        super().__init__(source, **kwargs)
        self.comm = world_comm()
        self.rank = 0 if self.comm is None else self.comm.Get_rank()
        self.size = 1 if self.comm is None else self.comm.Get_size()
        self._limit: Optional[int] = None
        self._smalldata: Optional["SmallData1"] = None

    def break_after(self, n: int) -> None:
        """Stop after ``n`` events in total (over all ranks)."""
        self._limit = int(n)

    def events(self) -> Iterator[Event]:
        """This rank's share of the events, in order."""
        n = 0
        for run in self.runs():
            for evt in _all_events(run):
                if self._limit is not None and n >= self._limit:
                    return
                if n % self.size == self.rank:
                    self.current = evt
                    yield evt
                n += 1
                if self._smalldata is not None and n % self._smalldata.gather_interval == 0:
                    self._smalldata.gather()

    def small_data(self, filename: Optional[str] = None, gather_interval: int = 100) -> "SmallData1":
        """The psana1 small-data writer of this data source."""
        self._smalldata = SmallData1(self, filename, gather_interval)
        return self._smalldata


def _all_events(run: Run) -> Iterator[Event]:
    """Every event of a run on every rank (the round-robin choice is the caller's)."""
    from .event import Event as Event2

    timestamps = run._run._file.timestamps
    for index in run._run._selection:
        yield Event(Event2(run._run, int(index), int(timestamps[index])))


class SmallData1:
    """psana1 ``smldata``: ``event(**kw)``, ``sum/max/min(x)``, ``save(**summary)``."""

    def __init__(self, ds: MPIDataSource, filename: Optional[str], gather_interval: int):
        self._ds = ds
        self.filename = None if filename is None else Path(filename)
        self.gather_interval = max(1, int(gather_interval))
        self._rows: List[tuple] = []
        self._writer: Optional[PartWriter] = None
        self._closed = False

    def event(self, *dicts, **kwargs) -> None:
        """Record values for the current event."""
        evt = self._ds.current
        if evt is None:
            raise RuntimeError("smldata.event() called outside an event loop")
        values: Dict[str, Any] = {}
        for data in (*dicts, kwargs):
            values.update(flatten(data))
        seconds, nanoseconds = unix_time(evt._event.timestamp)
        self._rows.append(((seconds << 32) | nanoseconds, values))

    def gather(self) -> None:
        """Collect every rank's rows on rank 0 and write them (collective)."""
        comm = self._ds.comm
        batches = [self._rows] if comm is None else comm.gather(self._rows, root=0)
        self._rows = []
        if self._ds.rank != 0 or self.filename is None:
            return
        rows = [row for batch in batches for row in batch]
        if rows:
            self._file().append("", rows)

    def _file(self) -> PartWriter:
        if self._writer is None:
            self._writer = PartWriter(self.filename, time_key="event_time")
        return self._writer

    def sum(self, value):
        return self._reduce(value, "sum")

    def max(self, value):
        return self._reduce(value, "max")

    def min(self, value):
        return self._reduce(value, "min")

    def _reduce(self, value, op: str):
        """The reduction over all ranks, returned on every rank."""
        comm = self._ds.comm
        if comm is None:
            return value
        return comm.bcast(reduce_to_root(comm, value, op), root=0)

    def save(self, *dicts, **kwargs) -> None:
        """Gather the last rows, write summary values and close the file (every rank)."""
        if not self._closed:
            self.gather()
            self._closed = True
            if self._writer is not None:
                self._writer.close()
        summary: Dict[str, Any] = {}
        for data in (*dicts, kwargs):
            summary.update(flatten(data))
        if self._ds.rank == 0 and self.filename is not None and (summary or self._writer is None):
            with h5py.File(self.filename, "a") as handle:
                for name, value in summary.items():
                    handle[name] = value
