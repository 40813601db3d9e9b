"""Writing a simulated run (HDF5 in CXI layout) and its ground-truth sidecar.

``run.h5`` holds the frames the way real CXI files do; ``run.truth.h5`` (see
:func:`truth_path`) holds, per frame, the kind and every Bragg spot with S >= 1 expected
photon: position, expected photons, visibility, resolution, lattice and Miller indices;
runs with ``artefact_fraction > 0`` also get ``artefact``, the name of each miss's
non-crystal artefact ("" for none).
Both are written to ``NAME.inprogress`` and renamed when complete.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Tuple, Union

import h5py
import numpy as np

from .. import __version__
from ..compression import h5_compression
from ..errors import InputError
from ..geometry import DETECTOR_GROUP, SOURCE_GROUP
from .detector import DetectorLayout, make_detector_layout
from .artefacts import ARTEFACT_NAMES
from .sfx import KIND_NAMES, SimulationConfig, render_frame

PathLike = Union[str, Path]
HC_EV_A = 12398.419843  #: h * c in eV * Angstrom
PSANA_EPOCH_UNIX_S = 631_152_000  #: 1990-01-01T00:00:00Z in Unix seconds
FRAME_RATE_HZ = 120
LIBVER = ("v110", "v110")
SPOT_COLUMNS = ("fs", "ss", "photons", "visible", "d_A", "lattice", "hkl")


def truth_path(path: PathLike) -> Path:
    """The truth sidecar of a run file: ``run.h5`` / ``run.cxi`` -> ``run.truth.h5``."""
    path = Path(path)
    stem = path.name[: -len(path.suffix)] if path.suffix in (".h5", ".cxi") else path.name
    return path.with_name(stem + ".truth.h5")


def psana_timestamps(seed: int, n_frames: int) -> np.ndarray:
    """Event times as psana encodes them: (seconds since 1990) << 32 | nanoseconds.

    Events are 1/120 s apart from a start time in 2020-2024 that depends on the seed.
    """
    start = np.random.default_rng([seed, 0x71AE]).integers(0, 5 * 365 * 86400 * 10**9)
    start_ns = (1_577_836_800 - PSANA_EPOCH_UNIX_S) * 10**9 + int(start)  # from 2020-01-01
    ns = start_ns + (np.arange(n_frames, dtype=np.uint64) * np.uint64(10**9)) // np.uint64(FRAME_RATE_HZ)
    seconds, nanoseconds = ns // np.uint64(10**9), ns % np.uint64(10**9)
    return (seconds << np.uint64(32)) | nanoseconds


@contextmanager
def atomic_run_files(path: Path, sidecar: Path) -> Iterator[Tuple[Path, Path]]:
    """Temporary names for a run file and its truth sidecar, renamed into place on success.

    Both are written as ``NAME.inprogress``; on an exception neither final name appears
    and the temporary files are removed.
    """
    tmp_run, tmp_truth = Path(f"{path}.inprogress"), Path(f"{sidecar}.inprogress")
    try:
        yield tmp_run, tmp_truth
        os.replace(tmp_truth, sidecar)
        os.replace(tmp_run, path)
    finally:
        for tmp in (tmp_run, tmp_truth):
            tmp.unlink(missing_ok=True)


def simulate_run(
    path: PathLike,
    config: SimulationConfig,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Dict[str, object]:
    """Simulate ``config.n_frames`` frames into ``path`` and its truth sidecar.

    Existing files are replaced (the CLI refuses unless asked). ``progress(done, total)``
    is called after every frame. Returns a summary: ``counts`` per kind name, ``seconds``,
    ``frames_per_s``, ``path``, ``truth_path`` and ``artefacts`` (frames per artefact name).
    """
    config.validate()
    path, sidecar = Path(path), truth_path(path)
    layout = make_detector_layout(config)
    start = time.perf_counter()
    with atomic_run_files(path, sidecar) as (tmp_run, tmp_truth):
        with h5py.File(tmp_run, "w", libver=LIBVER) as run:
            frames = _create_run_file(run, config, layout)
            truth = _write_frames(frames, config, layout, progress)
        _write_truth(tmp_truth, config, truth)
    seconds = time.perf_counter() - start
    counts = {name: int(np.count_nonzero(truth["kind"] == i)) for i, name in enumerate(KIND_NAMES)}
    artefacts = {name: int(np.count_nonzero(truth["artefact"] == name)) for name in ARTEFACT_NAMES}
    return {
        "artefacts": artefacts,
        "path": str(path),
        "truth_path": str(sidecar),
        "counts": counts,
        "seconds": seconds,
        "frames_per_s": config.n_frames / seconds,
    }


def _create_run_file(run: h5py.File, config: SimulationConfig, layout: DetectorLayout) -> h5py.Dataset:
    """Write the CXI metadata and return the empty (N, ss, fs) frame dataset (``config.dtype``)."""
    run.attrs["simulation_config"] = config.to_json()
    run.attrs["generator"] = f"mpireduce.simulate {__version__}"
    run.create_dataset("cxi_version", data=150)
    data = run.create_group("entry_1/data_1")
    data.create_dataset("mask", data=layout.mask, **h5_compression(config.compression))
    data.create_dataset("timestamp", data=psana_timestamps(config.seed, config.n_frames))
    detector = run.create_group(DETECTOR_GROUP)
    detector.attrs["panel_shape"] = np.array(layout.panel_shape, dtype=np.int64)
    detector.attrs["panel_grid"] = np.array(layout.panel_grid, dtype=np.int64)
    for name, value in (
        ("beam_center_fs_px", layout.beam_center_fs),
        ("beam_center_ss_px", layout.beam_center_ss),
        ("distance", layout.distance_m),
        ("x_pixel_size", layout.pixel_size_m),
        ("y_pixel_size", layout.pixel_size_m),
    ):
        detector.create_dataset(name, data=np.float64(value))
    source = run.create_group(SOURCE_GROUP)
    source.create_dataset("wavelength_A", data=np.float64(layout.wavelength_A))
    source.create_dataset("photon_energy_eV", data=np.float64(HC_EV_A / layout.wavelength_A))
    shape = (config.n_frames, *layout.shape)
    chunks = (1, *layout.shape)
    options = h5_compression(config.compression)
    return data.create_dataset("data", shape=shape, dtype=np.dtype(config.dtype), chunks=chunks, **options)


def _write_frames(frames: h5py.Dataset, config, layout, progress) -> dict:
    """Render and write every frame; collect the truth tables."""
    kinds = np.zeros(config.n_frames, dtype=np.int8)
    spots, bases, artefacts = [], [], []
    for i in range(config.n_frames):
        rendered = render_frame(config, i, layout)
        frames[i] = _saturate(rendered.frame, frames.dtype)
        kinds[i] = rendered.kind
        spots.append(rendered.spots)
        bases.append(rendered.bases)
        artefacts.append(rendered.artefact)
        if progress is not None:
            progress(i + 1, config.n_frames)
    return {"kind": kinds, "spots": spots, "bases": bases, "artefact": np.array(artefacts, dtype=str)}


def _saturate(frame: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Counts clipped to what the stored pixel type holds (a 16-bit detector saturates)."""
    info = np.iinfo(dtype)
    return np.clip(frame, info.min, info.max).astype(dtype)


def _write_truth(path: Path, config: SimulationConfig, truth: dict) -> None:
    """The truth sidecar: kinds, flattened spot tables, lattice bases (and artefact names)."""
    with h5py.File(path, "w", libver=LIBVER) as out:
        out.attrs["simulation_config"] = config.to_json()
        out.attrs["seed"] = config.seed
        out.attrs["generator"] = f"mpireduce.simulate {__version__}"
        out.attrs["visible_definition"] = "S / sqrt(S + B) >= 5, B = expected background in 3x3 pixels"
        kind = out.create_dataset("kind", data=truth["kind"])
        kind.attrs["names"] = list(KIND_NAMES)
        counts = [len(s["fs"]) for s in truth["spots"]]
        out.create_dataset("spot_offsets", data=_offsets(counts))
        for name in SPOT_COLUMNS:
            out.create_dataset(f"spot_{name}", data=np.concatenate([s[name] for s in truth["spots"]]))
        out.create_dataset("lattice_offsets", data=_offsets([len(b) for b in truth["bases"]]))
        out.create_dataset("lattice_basis", data=np.concatenate(truth["bases"]).reshape(-1, 3, 3))
        out["lattice_basis"].attrs["description"] = "lab-frame reciprocal basis, rows a*, b*, c* (1/Angstrom)"
        if config.artefact_fraction > 0:  # absent otherwise: such runs stay as they were
            names = [str(name) for name in truth.get("artefact", [""] * len(truth["kind"]))]
            artefact = out.create_dataset("artefact", data=names, dtype=h5py.string_dtype())
            artefact.attrs["names"] = list(ARTEFACT_NAMES)
            artefact.attrs["description"] = "non-crystal artefact drawn on the frame (misses only); empty: none"


def _offsets(counts) -> np.ndarray:
    """CSR-style offsets: row i spans ``offsets[i]:offsets[i + 1]``."""
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


@dataclass(frozen=True)
class Truth:
    """Ground truth of a simulated run, loaded into memory.

    Spots are the Bragg reflections with S >= 1 expected photon. ``fs``/``ss`` use the
    pixel-centre convention (pixel (0, 0) centre = 0.0) and are where the diffracted ray
    meets the detector, i.e. the centroid of the rendered profile. ``photons`` is S, the
    expected integrated photons; ``visible`` means S / sqrt(S + B) >= 5 with B the expected
    background photons in the 3x3 pixels around the spot, and the spot's centre pixel good
    in the mask (spots on gaps, the beamstop or bad pixels are never visible).
    """

    kind: np.ndarray  #: (N,) int8 index into kind_names
    kind_names: Tuple[str, ...]
    config: SimulationConfig
    offsets: np.ndarray
    columns: Dict[str, np.ndarray]
    lattice_offsets: np.ndarray
    lattice_basis: np.ndarray
    artefact: Optional[np.ndarray] = None  #: (N,) str artefact name per frame, "" for none

    def __post_init__(self) -> None:
        if self.artefact is None:  # runs written without artefacts
            object.__setattr__(self, "artefact", np.full(len(self.kind), "", dtype="<U1"))

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def has_artefact(self) -> np.ndarray:
        """(N,) bool: misses that carry a non-crystal artefact."""
        return self.artefact != ""

    @property
    def is_hit(self) -> np.ndarray:
        """(N,) bool: frames with at least one crystal (hit, weak or multi)."""
        return self.kind != 0

    def spots(self, i: int) -> Dict[str, np.ndarray]:
        """Spots of frame ``i``: fs, ss, photons, visible, d_A, lattice, hkl."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return {name: values[lo:hi] for name, values in self.columns.items()}

    def visible_spots(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """(fs, ss) of the visible spots of frame ``i``."""
        spots = self.spots(i)
        return spots["fs"][spots["visible"]], spots["ss"][spots["visible"]]

    def n_visible(self) -> np.ndarray:
        """(N,) number of visible spots per frame."""
        frame_of_spot = np.repeat(np.arange(len(self.kind)), np.diff(self.offsets))
        visible = np.bincount(frame_of_spot, weights=self.columns["visible"], minlength=len(self.kind))
        return visible.astype(np.int64)

    def bases(self, i: int) -> np.ndarray:
        """(n_lattices, 3, 3) lab-frame reciprocal bases (rows a*, b*, c*) of frame ``i``."""
        return self.lattice_basis[self.lattice_offsets[i] : self.lattice_offsets[i + 1]]


def read_truth(path: PathLike) -> Truth:
    """Load the truth of a run, given the run file (or the ``.truth.h5`` file itself)."""
    path = Path(path)
    sidecar = path if path.name.endswith(".truth.h5") else truth_path(path)
    try:
        with h5py.File(sidecar, "r") as f:
            columns = {name: f[f"spot_{name}"][()] for name in SPOT_COLUMNS}
            return Truth(
                kind=f["kind"][()],
                kind_names=tuple(str(n) for n in f["kind"].attrs["names"]),
                config=SimulationConfig.from_json(f.attrs["simulation_config"]),
                offsets=f["spot_offsets"][()],
                columns=columns,
                lattice_offsets=f["lattice_offsets"][()],
                lattice_basis=f["lattice_basis"][()],
                artefact=np.array(f["artefact"].asstr()[()], dtype=str) if "artefact" in f else None,
            )
    except (OSError, KeyError) as exc:
        message = f"cannot read simulation truth {sidecar}: {exc}; was it written by mpireduce simulate?"
        raise InputError(message) from exc
