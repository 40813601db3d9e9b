"""``source.kind: psana``: events of an LCLS run read through the psana API.

Uses the real ``psana`` (psana2) when it is importable, run serially inside each rank
(``PS_PARALLEL=none``: mpireduce does the sharding), and the HDF5 shim
:mod:`mpireduce.psana` otherwise. Frames are ``det.raw.image(evt)``: the calibrated,
assembled 2-D image; an event where the detector is missing is skipped and counted.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import InputError


def _datasource(source, timestamps=None):
    kwargs = {"exp": source.exp, "run": source.run}
    if source.dir:
        kwargs["dir"] = source.dir
    if timestamps is not None:
        kwargs["timestamps"] = np.asarray(timestamps, np.uint64)
    try:
        from .psana.install import real_psana_available

        if real_psana_available():
            os.environ.setdefault("PS_PARALLEL", "none")
            import psana

            return psana.DataSource(**kwargs)
        from mpi4py import MPI

        from .psana import DataSource2

        return DataSource2(comm=MPI.COMM_SELF, **kwargs)
    except (FileNotFoundError, KeyError) as exc:
        raise InputError(f"psana run exp={source.exp} run={source.run} not found ({exc}); "
                         "check source.exp, source.run and source.dir") from exc


def _detector(run, name: str):
    try:
        return run.Detector(name)
    except KeyError as exc:
        raise InputError(f"run has no detector {name!r} (detectors: {', '.join(run.detnames)}); "
                         "set source.detector") from exc


def open_psana_source(source):
    """The :class:`~mpireduce.sources.EventIndex` of a psana run (timestamps of every event)."""
    from .sources import EventIndex, InputFile

    run = next(iter(_datasource(source).runs()))
    det = _detector(run, source.detector)
    stamps, first = [], None
    for evt in run.events():
        stamps.append(evt.timestamp)
        if first is None:
            first = det.raw.image(evt)
        if source.max_events and len(stamps) >= source.max_events:
            break
    if first is None:
        raise InputError(f"detector {source.detector!r} has no data in exp={source.exp} run={source.run}")
    name = f"psana:exp={source.exp}:run={source.run}"
    info = InputFile(name, len(stamps), tuple(first.shape), str(first.dtype), 0, True, kind="psana")
    return EventIndex((info,), source.detector, None, tuple(first.shape), len(stamps),
                      event_ids=np.asarray(stamps, np.uint64))


class PsanaFrames:
    """Reads ranges of a psana run's events (by timestamp) on one rank."""

    def __init__(self, source, index):
        self.source = source
        self.index = index

    def read(self, begin: int, end: int) -> tuple:
        """(frames or None, timestamps) of events ``begin .. end - 1``."""
        wanted = self.index.event_ids[begin:end]
        run = next(iter(_datasource(self.source, timestamps=wanted).runs()))
        det = _detector(run, self.source.detector)
        found = {evt.timestamp: det.raw.image(evt) for evt in run.events()}
        return [found.get(int(t)) for t in wanted], wanted
