"""psana2's ``DataSource``, ``Run`` and ``Step`` over HDF5 run files.

``DataSource(exp=, run=, dir=, files=, max_events=0, batch_size=1000, detectors=,
timestamps=, smalldata_kwargs=)``; other psana2 keywords are accepted and ignored, and
unknown ones log a warning, as psana2 does. Under MPI the events are dispatched as
:mod:`mpireduce.psana.distribute` describes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from .detector import DetectorNameError, MissingDetector, make_detector
from .distribute import Dispatcher, Roles, world_comm
from .event import Event
from .layout import RunFile, find_run_files

LOG = logging.getLogger("mpireduce.psana")
KNOWN_KEYWORDS = {"exp", "run", "dir", "files", "max_events", "batch_size", "detectors", "timestamps",
                  "smalldata_kwargs"}
IGNORED_KEYWORDS = {"shmem", "drp", "live", "skip_calib_load", "dbsuffix", "destination", "mpi_ts",
                    "intg_det", "xdetectors", "det_name", "monitor", "psmon_publish", "prom_jobid",
                    "small_xtc", "use_calib_cache", "filter", "log_level", "intg_delta_t", "mode"}


class DataSource:
    """A psana2 data source over HDF5 runs (see the module docstring for the keywords)."""

    def __init__(self, comm: Optional[Any] = None, **kwargs):
        self._warn_unknown(kwargs)
        self.exp: Optional[str] = kwargs.get("exp")
        self.max_events = int(kwargs.get("max_events") or 0)
        self.batch_size = int(kwargs.get("batch_size") or 1000)
        self.detectors: Optional[List[str]] = _as_list(kwargs.get("detectors"))
        stamps = kwargs.get("timestamps")
        self.timestamps = None if stamps is None else np.asarray(stamps, dtype=np.uint64)
        self.smalldata_kwargs: Dict[str, Any] = dict(kwargs.get("smalldata_kwargs") or {})
        self.paths = self._resolve(kwargs)
        self.roles = Roles.create(comm if comm is not None else world_comm())
        self.dispatcher = Dispatcher(self.roles)
        self._events_left = self.max_events or None

    @staticmethod
    def _warn_unknown(kwargs: Dict[str, Any]) -> None:
        """Log a warning for keywords psana2 does not know."""
        for key in kwargs:
            if key not in KNOWN_KEYWORDS | IGNORED_KEYWORDS:
                LOG.warning("DataSource: unknown keyword %r ignored", key)

    def _resolve(self, kwargs: Dict[str, Any]) -> List[Path]:
        """The run files to read, from ``files`` or from ``exp``/``run``/``dir``."""
        files = _as_list(kwargs.get("files"))
        if files:
            return [Path(f) for f in files]
        if not self.exp:
            raise ConfigError("DataSource needs exp= (with run= and dir=) or files=")
        runs = kwargs.get("run")
        runs = None if runs is None else [int(r) for r in _as_list(runs)]
        return find_run_files(self.exp, runs, kwargs.get("dir"))

    def runs(self) -> Iterator["Run"]:
        """One :class:`Run` per run (none on smalldata-server ranks, as in psana2)."""
        if self.roles.kind == "srv":
            return
        for path in self.paths:
            yield Run(self, RunFile(path))

    def smalldata(self, **kwargs):
        """A :class:`~mpireduce.psana.smalldata.SmallData` writer for this data source."""
        from .smalldata import SmallData

        options = {**self.smalldata_kwargs, **kwargs}
        return SmallData(self.roles, **options)

    def is_mpi(self) -> bool:
        """True when running on more than one MPI rank."""
        return self.roles.comm is not None

    def is_bd(self) -> bool:
        """True on the ranks that process events (always True on one rank)."""
        return self.roles.is_worker()

    def is_srv(self) -> bool:
        """True on smalldata-server ranks."""
        return self.roles.kind == "srv"

    def is_smd0(self) -> bool:
        """True on the rank that reads the index (rank 0 under MPI)."""
        return self.roles.kind in ("serial", "smd0")

    def unique_user_rank(self) -> bool:
        """True on exactly one rank: the last worker (psana2's choice)."""
        return self.roles.comm is None or self.roles.rank == self.roles.bd_ranks[-1]

    def _take(self, indices: np.ndarray) -> np.ndarray:
        """Apply the ``max_events`` budget (identical on every rank)."""
        if self._events_left is None:
            return indices
        taken = indices[: self._events_left]
        self._events_left -= taken.size
        return taken


class Run:
    """One run: ``expt``, ``runnum``, ``timestamp``, ``events()``, ``steps()``, ``Detector()``."""

    def __init__(self, ds: DataSource, runfile: RunFile):
        self._ds = ds
        self._file = runfile
        self.expt = runfile.experiment
        self.runnum = runfile.runnum
        self.timestamp = runfile.begin_timestamp
        self._terminated = False
        self._selection = ds._take(self._select())

    def _select(self) -> np.ndarray:
        """Indices of the events the data source asks for (``timestamps=`` filter)."""
        indices = np.arange(len(self._file))
        if self._ds.timestamps is not None:
            indices = indices[np.isin(self._file.timestamps, self._ds.timestamps)]
        return indices

    @property
    def detnames(self) -> set:
        """Names of the detectors this run has (restricted by ``detectors=``)."""
        names = set(self._file.detectors)
        return names & set(self._ds.detectors) if self._ds.detectors else names

    @property
    def detinfo(self) -> Dict[tuple, List[str]]:
        """``{(name, 'raw'): methods}`` as psana2 lists them."""
        return {(name, "raw"): ["calib", "image", "raw"] if self._file.detectors[name].kind == "area" else ["value"]
                for name in sorted(self.detnames)}

    @property
    def epicsinfo(self) -> Dict[tuple, str]:
        """The scalar (EPICS-like) detectors: ``{(name, name): name}``."""
        return {(n, n): n for n in sorted(self.detnames) if self._file.detectors[n].kind == "scalar"}

    @property
    def scaninfo(self) -> Dict[tuple, str]:
        """Scan variables (none are stored in this layout)."""
        return {}

    def Detector(self, name: str, accept_missing: bool = False):  # noqa: N802 (psana's name)
        """The detector ``name``; unknown names raise KeyError unless ``accept_missing``."""
        if name not in self.detnames:
            if accept_missing:
                return MissingDetector(name)
            raise DetectorNameError(name, self.detnames)
        return make_detector(self._file.detectors[name])

    def events(self) -> Iterator[Event]:
        """This rank's events, in increasing timestamp order."""
        return self._dispatch(self._selection)

    def steps(self) -> Iterator["Step"]:
        """The scan steps of the run (one step when the file records none)."""
        steps = self._file.steps
        if steps is None:
            yield Step(self, 0, self._selection)
            return
        chosen = steps[self._selection]
        for value in np.unique(steps):
            yield Step(self, int(value), self._selection[chosen == value])

    def terminate(self) -> None:
        """Stop this rank's event loop after the current event."""
        self._terminated = True

    def _dispatch(self, indices: Sequence[int]) -> Iterator[Event]:
        """Events of ``indices`` that the dispatcher gives this rank."""
        timestamps = self._file.timestamps
        for index in self._ds.dispatcher.events([int(i) for i in indices], self._ds.batch_size):
            if self._terminated:
                return
            yield Event(self, index, int(timestamps[index]))


class Step:
    """A scan step: ``step.events()`` iterates its events."""

    def __init__(self, run: Run, value: int, indices: np.ndarray):
        self._run = run
        self.value = value
        self._indices = indices

    def events(self) -> Iterator[Event]:
        """This rank's events of the step."""
        return self._run._dispatch(self._indices)


def _as_list(value) -> Optional[list]:
    """None, one item or a sequence, as a list (or None)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, Path, int, np.integer)):
        return [value]
    return list(value)
