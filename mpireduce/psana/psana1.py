"""psana1 (LCLS-I) style access: ``DataSource('exp=xpptut15:run=14:smd')`` and friends.

The source string is ``key=value`` fields separated by ``:`` -- ``exp``, ``run`` (a number,
``N,M`` or ``N-M``), optional ``dir`` -- and the flags ``smd`` or ``idx``. Every rank reads
every event (use :class:`~mpireduce.psana.psana1_mpi.MPIDataSource` to split them).
``psana.Detector(name)`` binds to the most recently created data source. psana1 times are
Unix-epoch: ``evt.get(EventId).time()`` is ``(seconds since 1970, nanoseconds)``.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional

import numpy as np

from ..errors import ConfigError
from .datasource import DataSource as DataSource2
from .datasource import Run as Run2
from .detector import DetectorNameError, RawInterface
from .distribute import self_comm
from .event import PSANA_EPOCH_UNIX_S, Event as Event2, unix_time
from .layout import DetectorData

_CURRENT: List["DataSource"] = []  #: the data source psana.Detector binds to


def parse_source(text: str) -> Dict[str, object]:
    """``'exp=X:run=N:dir=D:smd'`` as a dict (flags map to True)."""
    fields: Dict[str, object] = {}
    for item in filter(None, text.split(":")):
        key, sep, value = item.partition("=")
        fields[key.strip()] = value.strip() if sep else True
    if "exp" not in fields:
        raise ConfigError(f"psana1 data source {text!r} has no exp=: write e.g. 'exp=xpptut15:run=14:smd'")
    return fields


def _runs(value) -> Optional[List[int]]:
    """Run numbers of a ``run=`` field: ``14``, ``14,15`` or ``14-16``."""
    if value is None or value is True:
        return None
    runs: List[int] = []
    for piece in str(value).split(","):
        first, _, last = piece.partition("-")
        runs.extend(range(int(first), int(last or first) + 1))
    return runs


class EventId:
    """``evt.get(EventId)``: ``time()`` -> (Unix seconds, nanoseconds), ``run()``, ``fiducials()``."""

    def __init__(self, event: Event2):
        self._event = event

    def time(self):
        return unix_time(self._event.timestamp)

    def run(self) -> int:
        return self._event.run().runnum

    def fiducials(self) -> int:
        return 0


class EventTime:
    """A psana1 event time: 64-bit ``(Unix seconds << 32) | nanoseconds`` plus a fiducial."""

    def __init__(self, time: int, fiducial: int = 0):
        self._time, self._fiducial = int(time), int(fiducial)

    def time(self) -> int:
        return self._time

    def seconds(self) -> int:
        return self._time >> 32

    def nanoseconds(self) -> int:
        return self._time & 0xFFFFFFFF

    def fiducial(self) -> int:
        return self._fiducial

    def psana2_timestamp(self) -> int:
        """The same time in psana2's 1990-epoch encoding."""
        return ((self.seconds() - PSANA_EPOCH_UNIX_S) << 32) | self.nanoseconds()


class Event:
    """A psana1 event: ``evt.get(EventId)``; other types give None."""

    def __init__(self, event: Event2):
        self._event = event

    def get(self, kind, *args):
        return EventId(self._event) if kind is EventId else None

    def run(self) -> int:
        return self._event.run().runnum


class Env:
    """``ds.env()``: experiment, instrument, calibration folder and job name."""

    def __init__(self, exp: str, calib_dir: str = ""):
        self._exp, self._calib_dir = exp, calib_dir

    def experiment(self) -> str:
        return self._exp

    def instrument(self) -> str:
        return self._exp[:3].upper()

    def calibDir(self) -> str:  # noqa: N802 (psana's name)
        return self._calib_dir

    def jobName(self) -> str:  # noqa: N802
        return self._exp


class Run:
    """A psana1 run: ``events()``, ``run()``, and with ``idx`` ``times()`` / ``event(t)``."""

    def __init__(self, run: Run2, ds: "DataSource"):
        self._run, self._ds = run, ds
        self._by_time = None

    def run(self) -> int:
        return self._run.runnum

    def events(self) -> Iterator[Event]:
        for event in self._run.events():
            self._ds.current = Event(event)
            yield self._ds.current

    def times(self) -> List[EventTime]:
        """Times of all events (``idx`` mode)."""
        stamps = self._run._file.timestamps[self._run._selection]
        return [EventTime(((s >> 32) + PSANA_EPOCH_UNIX_S) << 32 | (s & 0xFFFFFFFF)) for s in map(int, stamps)]

    def event(self, time: EventTime) -> Event:
        """The event at ``time`` (``idx`` mode); KeyError when the run has none then."""
        if self._by_time is None:
            self._by_time = {int(t): i for i, t in enumerate(self._run._file.timestamps)}
        index = self._by_time[time.psana2_timestamp()]
        self._ds.current = Event(Event2(self._run, index, int(self._run._file.timestamps[index])))
        return self._ds.current

    def env(self) -> Env:
        return self._ds.env()


class DataSource:
    """A psana1 data source from its string form (every rank reads every event)."""

    def __init__(self, source: str, **kwargs):
        fields = parse_source(source)
        self.source = source
        self.idx = "idx" in fields
        self._exp = str(fields["exp"])
        self._ds2 = DataSource2(comm=kwargs.pop("comm", None) or self_comm(), exp=self._exp,
                                run=_runs(fields.get("run")), dir=fields.get("dir"))
        self.current: Optional[Event] = None
        _CURRENT.append(self)
        del _CURRENT[:-1]

    def runs(self) -> Iterator[Run]:
        for run in self._ds2.runs():
            yield Run(run, self)

    def events(self) -> Iterator[Event]:
        for run in self.runs():
            yield from run.events()

    def env(self) -> Env:
        return Env(self._exp)

    def _detector_data(self, name: str, par=None) -> Optional[DetectorData]:
        """The detector's data in the run of ``par`` (an event, run or number)."""
        if isinstance(par, Event):
            par = par._event.run()
        if isinstance(par, Run):
            par = par._run
        if not isinstance(par, Run2):
            par = next((r for r in self._ds2.runs() if par is None or r.runnum == int(par)), None)
        if par is None or name not in par.detnames:
            return None
        return par._file.detectors[name]


def Detector(name: str, env=None):  # noqa: N802 (psana's name)
    """A psana1 detector bound to the latest data source; KeyError for an unknown name."""
    if not _CURRENT:
        raise ConfigError("psana.Detector needs a DataSource created first")
    ds = _CURRENT[-1]
    data = ds._detector_data(name)
    if data is None:
        raise DetectorNameError(name, next(ds._ds2.runs()).detnames)
    return Detector1(name, ds)


class Detector1:
    """psana1 detector methods: ``raw``, ``calib``, ``image``, ``mask``, ``pedestals``; scalars called."""

    def __init__(self, name: str, ds: DataSource):
        self.name, self._ds = name, ds

    def _raw_interface(self, par) -> Optional[RawInterface]:
        data = self._ds._detector_data(self.name, par)
        return None if data is None else RawInterface(data)

    def raw(self, evt: Event):
        raw = self._raw_interface(evt)
        return None if raw is None else raw.raw(evt._event)

    def calib(self, evt: Event, **kwargs):
        raw = self._raw_interface(evt)
        return None if raw is None else raw.calib(evt._event)

    def image(self, evt: Event, nda_in=None, **kwargs):
        raw = self._raw_interface(evt)
        return None if raw is None else raw.image(evt._event, nda=nda_in)

    def mask(self, par, **flags) -> Optional[np.ndarray]:
        """The stored pixel mask (1 = good) of the run of ``par``; psana's flags are ignored."""
        data = self._ds._detector_data(self.name, par)
        return None if data is None else data.mask

    def pedestals(self, par) -> Optional[np.ndarray]:
        data = self._ds._detector_data(self.name, par)
        return None if data is None else data.pedestals

    def gain(self, par) -> Optional[np.ndarray]:
        data = self._ds._detector_data(self.name, par)
        return None if data is None else data.gain

    def shape(self, par=None):
        data = self._ds._detector_data(self.name, par)
        return None if data is None else data.event_shape

    def __call__(self, evt: Optional[Event] = None):
        """A scalar detector's value in ``evt`` (default: the current event)."""
        evt = evt or self._ds.current
        data = None if evt is None else self._ds._detector_data(self.name, evt)
        return None if data is None else data.read(evt._event.index)
