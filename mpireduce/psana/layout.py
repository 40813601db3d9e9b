"""The HDF5 run layout the psana shim reads (one file per run), and its reader.

File name: ``{dir}/{exp}-r{run:04d}.h5`` -- ``dir`` is the experiment's data folder, as
psana2's ``DataSource(dir=...)`` points at the folder holding ``{exp}-r{run:04d}-s*.xtc2``.
Without ``dir`` the shim looks in ``$MPIREDUCE_PSANA_DIR/{exp}`` (default ``./{exp}``).

Inside (N = number of events, in increasing timestamp order)::

    /                      attrs: psana_layout=1, experiment (str), run (int),
                                  begin_timestamp (uint64), creator (str)
    /timestamp             (N,) uint64  psana encoding: seconds since 1990-01-01 << 32 | ns
    /step                  (N,) int32   scan step of each event (optional; absent = one step)
    /detectors/NAME/       attrs: kind = "area" | "scalar", dettype (e.g. "jungfrau", "epics")
        present            (N,) bool    the detector has data in event i
        data               area:   (n_present, segments, ss, fs) raw ADU (or (n_present, ss, fs))
                           scalar: (n_present,) float64
                           row k = the k-th event whose ``present`` is true
        calib/pedestals    (segments, ss, fs) float32  optional, area only
        calib/gain         (segments, ss, fs) float32  optional: photons (or keV) per ADU
        calib/mask         (segments, ss, fs) uint8    optional: 1 = good pixel
        geometry/origin    (segments, 2) int32 (ss, fs) of each segment's first pixel in the
                           assembled image; attrs image_shape = (ss, fs)   optional

``det.raw.calib`` is ``(raw - pedestals) * gain * mask`` with whichever constants exist;
``det.raw.image`` places each segment at its origin (segments stacked along ss without
geometry). Area data may be compressed with any hdf5plugin filter.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Union

import h5py
import hdf5plugin  # noqa: F401  (registers compression filters for reading)
import numpy as np

from ..errors import InputError

LAYOUT_VERSION = 1
DIR_ENV = "MPIREDUCE_PSANA_DIR"
PathLike = Union[str, Path]
_RUN_NAME = re.compile(r"^(?P<exp>.+)-r(?P<run>\d{4,})\.h5$")


class RunNotFoundError(InputError, FileNotFoundError):
    """A data folder, experiment or run the user asked for does not exist."""


def run_filename(exp: str, runnum: int) -> str:
    """The file name of run ``runnum`` of experiment ``exp``."""
    return f"{exp}-r{int(runnum):04d}.h5"


def default_dir(exp: str) -> Path:
    """The data folder of ``exp`` when no ``dir`` is given."""
    return Path(os.environ.get(DIR_ENV, ".")) / exp


def list_runs(folder: PathLike, exp: Optional[str] = None) -> Dict[str, List[int]]:
    """Experiments and their run numbers found in ``folder`` (``exp`` only, if given)."""
    found: Dict[str, List[int]] = {}
    for entry in sorted(os.listdir(folder)):
        match = _RUN_NAME.match(entry)
        if match and (exp is None or match["exp"] == exp):
            found.setdefault(match["exp"], []).append(int(match["run"]))
    return {name: sorted(runs) for name, runs in found.items()}


def find_run_files(exp: str, runs: Optional[List[int]], folder: Optional[PathLike]) -> List[Path]:
    """Paths of the requested runs (all runs of ``exp`` when ``runs`` is None), checked."""
    folder = Path(folder) if folder is not None else default_dir(exp)
    if not folder.is_dir():
        raise RunNotFoundError(
            f"data directory {folder} does not exist: pass dir= the folder that holds "
            f"{run_filename(exp, 1).replace('0001', 'NNNN')} files (or set ${DIR_ENV})"
        )
    available = list_runs(folder).get(exp, [])
    if not available:
        others = ", ".join(list_runs(folder)) or "none"
        raise RunNotFoundError(f"no runs of experiment {exp!r} in {folder} (experiments there: {others})")
    wanted = available if runs is None else [int(r) for r in runs]
    missing = [r for r in wanted if r not in available]
    if missing:
        raise RunNotFoundError(
            f"no run {missing[0]} of experiment {exp!r} in {folder} "
            f"(runs there: {', '.join(map(str, available))})"
        )
    return [folder / run_filename(exp, r) for r in wanted]


class DetectorData:
    """One detector of a run file: presence, per-event reads, constants and geometry."""

    def __init__(self, name: str, group: h5py.Group):
        self.name = name
        self.kind = str(group.attrs.get("kind", "area"))
        self.dettype = str(group.attrs.get("dettype", name))
        self.present = group["present"][()].astype(bool)
        self.rows = np.where(self.present, np.cumsum(self.present) - 1, -1)
        self._data = group["data"]
        self.pedestals = _optional(group, "calib/pedestals")
        self.gain = _optional(group, "calib/gain")
        self.mask = _optional(group, "calib/mask")
        self.origin = _optional(group, "geometry/origin")
        shape = group["geometry"].attrs.get("image_shape") if "geometry" in group else None
        self.image_shape = tuple(int(n) for n in shape) if shape is not None else None

    @property
    def event_shape(self) -> tuple:
        """Shape of one event's data (``()`` for a scalar detector)."""
        return tuple(self._data.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        """Stored data type."""
        return self._data.dtype

    def read(self, event: int):
        """Data of event ``event`` (index into the run), or None when absent there."""
        row = int(self.rows[event])
        if row < 0:
            return None
        value = self._data[row]
        return value.item() if self.kind == "scalar" else value


def _optional(group: h5py.Group, path: str) -> Optional[np.ndarray]:
    """A small dataset read whole, or None when the file lacks it."""
    return group[path][()] if path in group else None


class RunFile:
    """A run in the layout above, opened read-only."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise RunNotFoundError(f"run file {self.path} does not exist")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputError(f"cannot open run file {self.path} ({exc}): is it a complete HDF5 file?") from exc
        self._check()
        attrs = self._file.attrs
        self.experiment = _text(attrs["experiment"])
        self.runnum = int(attrs["run"])
        self.timestamps = self._file["timestamp"][()].astype(np.uint64)
        self.steps = self._file["step"][()].astype(np.int64) if "step" in self._file else None
        first = int(self.timestamps[0]) if self.timestamps.size else 0
        self.begin_timestamp = int(attrs.get("begin_timestamp", first))
        self.detectors = {
            name: DetectorData(name, group) for name, group in self._file.get("detectors", {}).items()
        }

    def _check(self) -> None:
        """Raise InputError when the file is not in this layout."""
        attrs = self._file.attrs
        if "psana_layout" not in attrs or "timestamp" not in self._file:
            raise InputError(
                f"{self.path} is not a psana-layout run file (no psana_layout attribute or /timestamp): "
                "make one with mpireduce.psana.simulate_run or `mpireduce convert`"
            )

    def __len__(self) -> int:
        return int(self.timestamps.size)

    def close(self) -> None:
        """Close the HDF5 file."""
        self._file.close()


def _text(value) -> str:
    """An HDF5 string attribute as str."""
    return value.decode() if isinstance(value, bytes) else str(value)
