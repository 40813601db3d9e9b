"""Rank 0's output: kept frames and peaks in CXI layout, every event's decision, provenance.

Layout (``h5py`` + ``import hdf5plugin`` opens it; CrystFEL reads the CXI part)::

    /cxi_version                      150
    /entry_1/data_1/data              (kept, ss, fs) kept frames, compressed
    /entry_1/data_1/mask              (ss, fs) int8, 1 = good pixel
    /entry_1/data_1/event_index       (kept,) global event number of each kept frame
    /entry_1/data_1/timestamp         (kept,) event timestamp (psana encoding when known)
    /entry_1/result_1/nPeaks, peakXPosRaw, peakYPosRaw, peakTotalIntensity,
                      peakNPixels, peakMaximumValue, peakSNR      (kept, max_peaks)
    /entry_1/instrument_1/...         beam centre, pixel size, distance, wavelength
    /LCLS/photon_energy_eV            (kept,) for CrystFEL's ``photon_energy = /LCLS/...``
    /mpireduce/events/...             one row per input event: file, index, timestamp,
                                      status, n_peaks, score, hit, kept_index
    /mpireduce/peaks/...              peaks of every event (kept or not), flat
    /mpireduce/statistics             counts, hit rate, per-rank speed
    /mpireduce/provenance             NXprocess: program, config, inputs, libraries ...

The file is written as ``NAME.inprogress`` and renamed when complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .compression import h5_compression
from .errors import OutputError
from .geometry import DETECTOR_GROUP, SOURCE_GROUP, DetectorGeometry
from .results import ChunkResult
from .sources import STATUS_NAMES

INPROGRESS_SUFFIX = ".inprogress"
#: CXI peak datasets and the PeakTable column each one holds
CXI_PEAK_COLUMNS = {
    "peakXPosRaw": "fs",
    "peakYPosRaw": "ss",
    "peakTotalIntensity": "intensity",
    "peakNPixels": "npix",
    "peakMaximumValue": "max_value",
    "peakSNR": "snr",
}
EVENT_COLUMNS = {
    "file_index": np.int32, "index_in_file": np.int64, "timestamp": np.uint64, "status": np.int8,
    "n_peaks": np.int32, "score": np.float32, "hit": np.bool_, "kept_index": np.int64,
}
PEAK_COLUMNS = {"event": np.int64, "fs": np.float32, "ss": np.float32, "intensity": np.float32,
                "npix": np.int32, "max_value": np.float32, "snr": np.float32}
HC_EV_A = 12398.419843320026  # h*c in eV * Angstrom


def check_output_path(path: Path, overwrite: bool) -> None:
    """Fail before any work when the output exists (and --overwrite is not given) or can't be made."""
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} exists; pass --overwrite or choose another output.path")
    if not path.parent.exists():
        raise OutputError(f"output folder {path.parent} does not exist; create it or fix output.path")
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"cannot write in {path.parent}; choose another output.path")


class ReducedWriter:
    """Appends chunk results in order and finishes the file atomically."""

    def __init__(self, path: Path, *, geometry: DetectorGeometry, frame_dtype: str, compression: str,
                 max_peaks: int, source_files: list, descriptor_names: tuple = (), class_names: tuple = ()):
        import h5py
        import hdf5plugin  # noqa: F401

        self.path = Path(path)
        self.tmp_path = Path(str(path) + INPROGRESS_SUFFIX)
        self.max_peaks = max_peaks
        self.n_kept = 0
        self.n_events = 0
        self.file = h5py.File(self.tmp_path, "w", libver=("v110", "v110"))
        self.file["cxi_version"] = 150
        self._create_frames(geometry, np.dtype(frame_dtype), compression)
        self._create_peaks_cxi()
        self._create_tables(source_files, descriptor_names)
        if class_names:
            _create_event_matrix(self.file["mpireduce/events"], "class_scores", class_names,
                                 "class probabilities of the classifier; NaN where the event was skipped")
        self._write_instrument(geometry)

    # -- creation ---------------------------------------------------------------------
    def _create_frames(self, geometry: DetectorGeometry, dtype: np.dtype, compression: str) -> None:
        ss, fs = geometry.shape
        data_1 = self.file.create_group("entry_1/data_1")
        data_1.create_dataset("data", (0, ss, fs), dtype=dtype, maxshape=(None, ss, fs),
                              chunks=(1, ss, fs), **h5_compression(compression))
        data_1.create_dataset("mask", data=geometry.mask.astype(np.int8), **h5_compression(compression))
        data_1["mask"].attrs["convention"] = "1 = good pixel (CrystFEL mask_good = 0x1)"
        data_1.create_dataset("event_index", (0,), np.int64, maxshape=(None,), chunks=(4096,))
        data_1.create_dataset("timestamp", (0,), np.uint64, maxshape=(None,), chunks=(4096,))
        self.wavelength_A = geometry.wavelength_A
        if geometry.wavelength_A:
            self.file.create_dataset("LCLS/photon_energy_eV", (0,), np.float64, maxshape=(None,), chunks=(4096,))

    def _create_peaks_cxi(self) -> None:
        result = self.file.create_group("entry_1/result_1")
        result.create_dataset("nPeaks", (0,), np.int32, maxshape=(None,), chunks=(4096,))
        for name in CXI_PEAK_COLUMNS:
            result.create_dataset(name, (0, self.max_peaks), np.float32, maxshape=(None, self.max_peaks),
                                  chunks=(64, self.max_peaks), **h5_compression("bitshuffle-lz4"))

    def _create_tables(self, source_files: list, descriptor_names: tuple) -> None:
        events = self.file.create_group("mpireduce/events")
        for name, dtype in EVENT_COLUMNS.items():
            events.create_dataset(name, (0,), dtype, maxshape=(None,), chunks=(8192,), **h5_compression("zstd"))
        if descriptor_names:
            _create_event_matrix(events, "descriptor", descriptor_names,
                                 "peak counts per resolution shell x azimuthal sector (seed 000)")
        events["status"].attrs["names"] = json.dumps(list(STATUS_NAMES))
        events["kept_index"].attrs["meaning"] = "row in /entry_1/data_1/data, -1 when the frame was not kept"
        events["source_files"] = np.array([str(p) for p in source_files], dtype=object)
        peaks = self.file.create_group("mpireduce/peaks")
        for name, dtype in PEAK_COLUMNS.items():
            peaks.create_dataset(name, (0,), dtype, maxshape=(None,), chunks=(16384,), **h5_compression("zstd"))
        self._events = _ColumnBuffer(events, list(EVENT_COLUMNS))
        self._peaks = _ColumnBuffer(peaks, list(PEAK_COLUMNS))

    def _write_instrument(self, geometry: DetectorGeometry) -> None:
        det = self.file.require_group(DETECTOR_GROUP)
        det["beam_center_fs_px"] = geometry.beam_center_fs
        det["beam_center_ss_px"] = geometry.beam_center_ss
        if geometry.pixel_size_m:
            det["x_pixel_size"] = det["y_pixel_size"] = geometry.pixel_size_m
        if geometry.distance_m:
            det["distance"] = geometry.distance_m
        if geometry.wavelength_A:
            src = self.file.require_group(SOURCE_GROUP)
            src["wavelength_A"] = geometry.wavelength_A
            src["photon_energy_eV"] = HC_EV_A / geometry.wavelength_A

    # -- appending ----------------------------------------------------------------------
    def append(self, result: ChunkResult) -> None:
        """Write one chunk's events, peaks and kept frames."""
        if result.start != self.n_events:
            raise RuntimeError(f"chunk starting at event {result.start} arrived; expected {self.n_events}")
        kept_rows = np.flatnonzero(result.hit)
        kept_index = np.full(len(result), -1, np.int64)
        if len(result.kept_frames):
            kept_index[kept_rows] = self.n_kept + np.arange(len(kept_rows))
            self._append_kept(result, kept_rows)
        self._append_events(result, kept_index)
        self._append_peaks(result)
        if result.descriptor is not None:
            _extend(self.file["mpireduce/events/descriptor"], result.descriptor)
        if result.class_scores is not None:
            _extend(self.file["mpireduce/events/class_scores"], result.class_scores)
        self.n_events += len(result)

    def _append_kept(self, result: ChunkResult, rows: np.ndarray) -> None:
        frames = np.stack(result.kept_frames)
        _extend(self.file["entry_1/data_1/data"], frames)
        _extend(self.file["entry_1/data_1/event_index"], result.start + rows)
        _extend(self.file["entry_1/data_1/timestamp"], result.timestamp[rows])
        if self.wavelength_A:
            _extend(self.file["LCLS/photon_energy_eV"], np.full(len(rows), HC_EV_A / self.wavelength_A))
        cxi = self.file["entry_1/result_1"]
        n = np.minimum(result.n_peaks[rows], self.max_peaks)
        _extend(cxi["nPeaks"], n)
        blocks = {name: np.zeros((len(rows), self.max_peaks), np.float32) for name in CXI_PEAK_COLUMNS}
        for i, row in enumerate(rows):
            table = result.event_peaks(int(row))
            for name, column in CXI_PEAK_COLUMNS.items():
                values = getattr(table, column)[: self.max_peaks]
                blocks[name][i, : len(values)] = values
        for name, block in blocks.items():
            _extend(cxi[name], block)
        self.n_kept += len(rows)

    def _append_events(self, result: ChunkResult, kept_index: np.ndarray) -> None:
        self._events.add({"file_index": result.file_no, "index_in_file": result.index_in_file,
                          "timestamp": result.timestamp, "status": result.status, "n_peaks": result.n_peaks,
                          "score": result.score, "hit": result.hit, "kept_index": kept_index})

    def _append_peaks(self, result: ChunkResult) -> None:
        columns = {name: result.peaks[name] for name in PEAK_COLUMNS if name != "event"}
        self._peaks.add(dict(columns, event=result.start + result.peak_event.astype(np.int64)))

    # -- finishing ----------------------------------------------------------------------
    def finish(self, statistics: dict, provenance) -> Path:
        """Write statistics and provenance, close, and rename to the final name."""
        from .provenance import write_provenance

        stats = self.file.create_group("mpireduce/statistics")
        for key, value in statistics.items():
            if isinstance(value, (dict, list)):
                stats[key] = json.dumps(value)
            else:
                stats.attrs[key] = value
        write_provenance(self.file.create_group("mpireduce/provenance"), provenance)
        self._events.flush()
        self._peaks.flush()
        self.file.close()
        os.replace(self.tmp_path, self.path)
        return self.path


class _ColumnBuffer:
    """Rows for a group of 1-D datasets, written in blocks of ``rows`` (few HDF5 calls, bounded memory)."""

    def __init__(self, group, names: list, rows: int = 16384):
        self.group, self.names, self.rows = group, names, rows
        self._parts: list = []
        self._count = 0

    def add(self, columns: dict) -> None:
        self._parts.append(columns)
        self._count += len(columns[self.names[0]])
        if self._count >= self.rows:
            self.flush()

    def flush(self) -> None:
        if not self._parts:
            return
        for name in self.names:
            _extend(self.group[name], np.concatenate([part[name] for part in self._parts]))
        self._parts, self._count = [], 0


def _create_event_matrix(events, name: str, columns: tuple, meaning: str) -> None:
    """An extendable (events, len(columns)) float32 table in the ``events`` group, columns named."""
    n = len(columns)
    matrix = events.create_dataset(name, (0, n), np.float32, maxshape=(None, n), chunks=(1024, n),
                                   **h5_compression("zstd"))
    matrix.attrs["columns"] = json.dumps(list(columns))
    matrix.attrs["meaning"] = meaning


def _extend(dataset, values) -> None:
    values = np.asarray(values)
    if len(values) == 0:
        return
    start = dataset.shape[0]
    dataset.resize(start + len(values), axis=0)
    dataset[start:] = values
