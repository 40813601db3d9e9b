"""Event sources: HDF5/CXI frame stacks, checked before any work starts.

``open_source`` expands the configured files, opens each one, and checks the frame
dataset (present, 3-D, numeric). It returns an :class:`EventIndex`, a small picklable
description of every event that rank 0 broadcasts. Each rank then reads frames with
its own :class:`FrameReader`.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .config import JobConfig
from .errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputFile:
    """One input file: where it is and what its frame stack looks like."""

    path: str
    n_events: int
    frame_shape: tuple
    dtype: str
    size_bytes: int
    has_timestamp: bool
    kind: str = "hdf5"  #: hdf5 (a frame stack), image (a fabio-readable file) or psana (a run)


@dataclass(frozen=True, eq=False)
class EventIndex:
    """Every event of a run, in order: global event ``g`` lives in one file at one index."""

    files: tuple
    dataset: str
    timestamp_path: Optional[str]
    frame_shape: tuple
    n_events: int
    event_ids: Optional[np.ndarray] = None  #: psana runs: the timestamp of every event

    def offsets(self) -> np.ndarray:
        """First global event number of each file, plus the total at the end."""
        counts = [f.n_events for f in self.files]
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def locate(self, start: int, stop: int):
        """Yield (file number, first index, last index + 1, first global event) covering [start, stop)."""
        offsets = self.offsets()
        file_no = int(np.searchsorted(offsets, start, side="right") - 1)
        g = start
        while g < stop:
            begin = g - offsets[file_no]
            end = min(stop, offsets[file_no + 1]) - offsets[file_no]
            if end > begin:
                yield file_no, int(begin), int(end), int(g)
            g = int(offsets[file_no] + end)
            file_no += 1


def expand_files(config: JobConfig) -> list:
    """The input paths named by ``source.files``, globs expanded, in order, duplicates dropped."""
    paths = []
    for pattern in config.source.files:
        full = str(config.resolve_path(pattern))
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        if not matches:
            raise InputError(f"no input file matches {pattern!r} (looked for {full}); check source.files")
        paths.extend(m for m in matches if m not in paths)
    return paths


def open_source(config: JobConfig) -> EventIndex:
    """Check every input file and return the run's :class:`EventIndex`.

    Raises :class:`InputError` with a message saying what to do when a file is missing,
    unreadable, truncated, or has no usable frame dataset.
    """
    import hdf5plugin  # noqa: F401  (registers bitshuffle/LZ4/zstd filters)

    from .image_files import inspect_image_file

    src = config.source
    if src.kind == "psana":
        from .psana_source import open_psana_source

        return open_psana_source(src)
    if src.kind == "images":
        files = [inspect_image_file(path) for path in expand_files(config)]
    else:
        files = [_inspect_file(path, src.dataset, src.timestamp) for path in expand_files(config)]
    shape = files[0].frame_shape
    for f in files[1:]:
        if f.frame_shape != shape:
            log.warning("%s has frames of shape %s, not %s: its events will be skipped as bad_shape",
                        f.path, f.frame_shape, shape)
    n_events = sum(f.n_events for f in files)
    if src.max_events:
        n_events = min(n_events, src.max_events)
    if n_events == 0:
        raise InputError("the input files hold no events; check source.files and source.dataset")
    return EventIndex(tuple(files), src.dataset, src.timestamp, shape, n_events)


def _inspect_file(path: str, dataset: str, timestamp_path: Optional[str]) -> InputFile:
    import h5py

    if not os.path.exists(path):
        raise InputError(f"input file {path} does not exist; check source.files")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(
            f"cannot open {path} as HDF5 ({_short(exc)}): the file is truncated, corrupt or not HDF5; "
            "re-copy it or remove it from source.files"
        ) from exc
    with handle:
        if dataset not in handle or not isinstance(handle[dataset], h5py.Dataset):
            raise InputError(_missing_dataset_message(handle, path, dataset))
        dset = handle[dataset]
        if dset.ndim != 3:
            raise InputError(
                f"{path}:{dataset} has shape {dset.shape}; expected a (events, ss, fs) stack. "
                "Point source.dataset at a 3-D frame dataset"
            )
        if dset.dtype.kind not in "iuf":
            raise InputError(f"{path}:{dataset} has dtype {dset.dtype}; expected integer or float frames")
        _check_readable(dset, path, dataset)
        has_ts = bool(timestamp_path) and timestamp_path in handle and handle[timestamp_path].shape[:1] == dset.shape[:1]
        return InputFile(path, int(dset.shape[0]), tuple(dset.shape[1:]), str(dset.dtype),
                         os.path.getsize(path), has_ts)


def _check_readable(dset, path: str, dataset: str) -> None:
    """Read the first frame so missing filter plugins or broken chunks fail now."""
    if dset.shape[0] == 0:
        return
    try:
        dset[0]
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot read the first frame of {path}:{dataset} ({_short(exc)}); the file may be corrupt "
            "or need an HDF5 filter plugin (pip install hdf5plugin)"
        ) from exc


def _missing_dataset_message(handle, path: str, dataset: str) -> str:
    stacks = []

    def visit(name, obj):
        if getattr(obj, "ndim", 0) == 3 and len(stacks) < 5:
            stacks.append("/" + name)

    handle.visititems(visit)
    hint = f"3-D datasets in the file: {', '.join(stacks)}" if stacks else "the file holds no 3-D dataset"
    return f"{path} has no dataset {dataset}; set source.dataset ({hint})"


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


STATUS_OK, STATUS_NONFINITE, STATUS_BAD_SHAPE, STATUS_READ_ERROR, STATUS_NO_DATA = 0, 1, 2, 3, 4
STATUS_NAMES = ("ok", "nonfinite", "bad_shape", "read_error", "no_data")


class FrameReader:
    """Reads ranges of global events on one rank, keeping files open between calls."""

    def __init__(self, index: EventIndex, source=None):
        self.index = index
        self._handles: dict = {}
        self._psana = None
        if index.files[0].kind == "psana":
            from .psana_source import PsanaFrames

            self._psana = PsanaFrames(source, index)

    def read(self, start: int, stop: int):
        """Frames of events [start, stop) as a list (None for unreadable ones) and their metadata.

        Returns ``(frames, file_no, index_in_file, timestamp, status)``; the last four are
        numpy arrays of length ``stop - start``.
        """
        n = stop - start
        frames: list = [None] * n
        file_no = np.zeros(n, np.int32)
        local = np.zeros(n, np.int64)
        stamps = np.zeros(n, np.uint64)
        status = np.zeros(n, np.int8)
        if self._psana is not None:
            frames, stamps = self._psana.read(start, stop)
            status = np.array([STATUS_OK if f is not None else STATUS_NO_DATA for f in frames], np.int8)
            return frames, file_no, np.arange(start, stop), stamps.astype(np.uint64), status
        for f, begin, end, g in self.index.locate(start, stop):
            at = slice(g - start, g - start + end - begin)
            file_no[at], local[at] = f, np.arange(begin, end)
            stamps[at] = self._timestamps(f, begin, end)
            status[at], frames[at] = self._frames(f, begin, end)
        return frames, file_no, local, stamps, status

    def _frames(self, f: int, begin: int, end: int):
        info = self.index.files[f]
        n = end - begin
        if info.frame_shape != self.index.frame_shape:
            return np.full(n, STATUS_BAD_SHAPE, np.int8), [None] * n
        if info.kind == "image":
            from .image_files import read_image_frames

            return np.zeros(n, np.int8), read_image_frames(info.path, begin, end)
        dset = self._handle(f)[self.index.dataset]
        try:
            block = dset[begin:end]
            return np.zeros(n, np.int8), list(block)
        except (OSError, ValueError):
            return self._frames_one_by_one(dset, f, begin, end)

    def _frames_one_by_one(self, dset, f: int, begin: int, end: int):
        status, frames = [], []
        for i in range(begin, end):
            try:
                frames.append(dset[i])
                status.append(STATUS_OK)
            except (OSError, ValueError) as exc:
                log.warning("event %d of %s unreadable (%s): skipped", i, self.index.files[f].path, _short(exc))
                frames.append(None)
                status.append(STATUS_READ_ERROR)
        return np.array(status, np.int8), frames

    def _timestamps(self, f: int, begin: int, end: int) -> np.ndarray:
        if not self.index.files[f].has_timestamp:
            return np.zeros(end - begin, np.uint64)
        return self._handle(f)[self.index.timestamp_path][begin:end].astype(np.uint64)

    def _handle(self, f: int):
        import h5py
        import hdf5plugin  # noqa: F401  (registers the filters this rank needs to read)

        if f not in self._handles:
            self._handles[f] = h5py.File(self.index.files[f].path, "r")
        return self._handles[f]

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
