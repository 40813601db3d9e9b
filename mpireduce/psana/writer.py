"""Writing a run in the layout of :mod:`mpireduce.psana.layout`, one event at a time.

Used by the simulator (:func:`mpireduce.psana.simulate_run`) and by ``mpireduce convert``.
The file is written as ``NAME.inprogress`` and renamed when :meth:`RunWriter.close` runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import h5py
import numpy as np

from .. import __version__
from ..compression import h5_compression
from .layout import LAYOUT_VERSION, PathLike, run_filename


class _DetectorWriter:
    """The growing ``data`` dataset and presence list of one detector."""

    def __init__(self, group: h5py.Group, first: np.ndarray, n_before: int, kind: str, compression: str):
        self.group = group
        self.kind = kind
        self.present: List[bool] = [False] * n_before
        shape = first.shape
        options = h5_compression(compression) if kind == "area" else {}
        dtype = first.dtype if kind == "area" else np.float64
        self.data = group.create_dataset(
            "data", shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
            chunks=(1, *shape) if kind == "area" else (1024,), **options,
        )

    def add(self, value) -> None:
        """Append one event's value (None = absent in this event)."""
        self.present.append(value is not None)
        if value is None:
            return
        n = self.data.shape[0]
        self.data.resize(n + 1, axis=0)
        self.data[n] = value

    def finish(self, n_events: int) -> None:
        """Write the presence mask, padded to ``n_events``."""
        present = self.present + [False] * (n_events - len(self.present))
        self.group.create_dataset("present", data=np.array(present, dtype=bool))


class RunWriter:
    """Write run ``runnum`` of ``exp`` into ``folder``; events must come in time order."""

    def __init__(self, folder: PathLike, exp: str, runnum: int, compression: str = "bitshuffle-lz4",
                 dettypes: Optional[Mapping[str, str]] = None):
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.path = Path(folder) / run_filename(exp, runnum)
        self._partial = self.path.with_name(self.path.name + ".inprogress")
        self._file = h5py.File(self._partial, "w")
        self._file.attrs.update(psana_layout=LAYOUT_VERSION, experiment=exp, run=int(runnum),
                                creator=f"mpireduce {__version__}")
        self._detectors: Dict[str, _DetectorWriter] = {}
        self._timestamps: List[int] = []
        self._steps: List[int] = []
        self._compression = compression
        self._dettypes = dict(dettypes or {})

    def add_event(self, timestamp: int, values: Mapping[str, object], step: int = 0) -> None:
        """Append one event: ``values`` maps detector names to arrays, numbers or None."""
        if self._timestamps and timestamp <= self._timestamps[-1]:
            raise ValueError(f"timestamps must increase: {timestamp} after {self._timestamps[-1]}")
        for name, value in values.items():
            if value is not None and name not in self._detectors:
                self._detectors[name] = self._new_detector(name, value)
        for name, writer in self._detectors.items():
            writer.add(_as_value(values.get(name), writer.kind))
        self._timestamps.append(int(timestamp))
        self._steps.append(int(step))

    def _new_detector(self, name: str, value) -> _DetectorWriter:
        """Create the group of a detector first seen in the current event."""
        array = np.asarray(value)
        kind = "area" if array.ndim >= 2 else "scalar"
        group = self._file.require_group("detectors").create_group(name)
        group.attrs.update(kind=kind, dettype=self._dettypes.get(name, "epics" if kind == "scalar" else name))
        return _DetectorWriter(group, array, len(self._timestamps), kind, self._compression)

    def set_constants(self, name: str, pedestals=None, gain=None, mask=None) -> None:
        """Store calibration constants of area detector ``name`` (each optional)."""
        group = self._file.require_group(f"detectors/{name}/calib")
        for key, value, dtype in (("pedestals", pedestals, np.float32), ("gain", gain, np.float32),
                                  ("mask", mask, np.uint8)):
            if value is not None:
                group.create_dataset(key, data=np.asarray(value, dtype=dtype))

    def set_geometry(self, name: str, origin, image_shape: Tuple[int, int]) -> None:
        """Store the segment origins (segments, 2) (ss, fs) and assembled image shape."""
        group = self._file.require_group(f"detectors/{name}/geometry")
        group.create_dataset("origin", data=np.asarray(origin, dtype=np.int32))
        group.attrs["image_shape"] = np.asarray(image_shape, dtype=np.int64)

    def close(self) -> Path:
        """Write the per-event tables, close and rename into place; returns the path."""
        n = len(self._timestamps)
        self._file.create_dataset("timestamp", data=np.array(self._timestamps, dtype=np.uint64))
        if len(set(self._steps)) > 1:
            self._file.create_dataset("step", data=np.array(self._steps, dtype=np.int32))
        self._file.attrs["begin_timestamp"] = np.uint64(self._timestamps[0] if n else 0)
        for writer in self._detectors.values():
            writer.finish(n)
        self._file.close()
        os.replace(self._partial, self.path)
        return self.path


def _as_value(value, kind: str):
    """A scalar detector's value as float (None stays None); arrays unchanged."""
    if value is None or kind == "area":
        return value
    return float(np.asarray(value).reshape(-1)[0])
