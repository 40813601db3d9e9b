"""Simulated single-particle imaging (SPI) runs: no hits, single, multiple and unintended hits.

Each frame is the coherent far-field pattern ``|FT2(projected density)|^2`` (small-angle
approximation, see :mod:`.particles`) computed on a grid twice as fine in reciprocal space
as the detector and summed over 2x2 fine samples (pixel integration, so speckles finer than
a pixel lose contrast as on a real detector). Photons per frame scale with the particle
volume squared and a per-shot fluence (where the particle crossed the focus); Poisson
noise is drawn on the sum with a gas-scatter background. A beamstop disc and a horizontal
gap between the two detector halves are masked (0 in data and mask).

Kinds: ``no_hit`` (background only), ``single`` (one particle, 30-100 nm), ``multi`` (a
touching cluster of 2-3 particles of one shape, interfering), ``unintended`` (a large water
droplet, a long rod, or an aggregate of many small spheres). Frame ``i`` depends only on
``(seed, i)``. Truth ``separation`` of a multi hit is the largest distance between particle
centres projected across the beam over the mean particle diameter: about 5% of the touching
clusters, seen along their axis, fall below 0.5 and show single-looking patterns.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import h5py
import numpy as np
import scipy.fft

from .. import __version__
from ..compression import h5_compression
from ..errors import ConfigError, InputError
from ..geometry import DETECTOR_GROUP, SOURCE_GROUP
from .particles import SHAPES, Grid, add_ellipsoid, add_particle
from .runfile import HC_EV_A, LIBVER, atomic_run_files, psana_timestamps, truth_path

SPI_KIND_NAMES = ("no_hit", "single", "multi", "unintended")
NO_HIT, SINGLE, MULTI, UNINTENDED = range(4)
UNINTENDED_SHAPES = ("droplet", "rod", "aggregate")
REFERENCE_SIZE_NM = 70.0


@dataclass(frozen=True)
class SpiConfig:
    """Everything that defines a simulated SPI run."""

    n_frames: int = 200
    kind_weights: Tuple[float, float, float, float] = (0.4, 0.3, 0.15, 0.15)  #: no_hit, single, multi, unintended
    shapes: Tuple[str, ...] = ("sphere", "icosahedron", "ellipsoid", "cube", "octahedron", "dumbbell")
    size_nm: Tuple[float, float] = (30.0, 100.0)  #: particle size range (equal-volume sphere diameter)
    detector_px: int = 128  #: square detector side
    pixel_size_m: float = 300e-6  #: 4x4-binned 75 um pixels
    distance_m: float = 0.35
    wavelength_A: float = 2.5  #: ~5 keV
    photons_ref: float = 2.0e5  #: expected photons of a 70 nm particle at full fluence
    fluence_range: Tuple[float, float] = (0.3, 1.0)  #: per-shot fraction of the peak fluence
    background: float = 0.02  #: flat background photons per pixel, plus a gas halo near the beam
    beamstop_px: float = 5.0
    gap_px: int = 3
    seed: int = 0
    compression: str = "bitshuffle-lz4"

    def validate(self) -> "SpiConfig":
        """Return self, or raise ConfigError naming the bad value."""
        unknown = [s for s in self.shapes if s not in SHAPES]
        if unknown or not self.shapes:
            raise ConfigError(f"SPI shapes {unknown or '[]'} are not a non-empty subset of {sorted(SHAPES)}")
        if len(self.kind_weights) != 4 or min(self.kind_weights) < 0 or sum(self.kind_weights) <= 0:
            raise ConfigError("kind_weights needs 4 non-negative weights (no_hit, single, multi, unintended)")
        if self.n_frames < 1 or self.detector_px < 16:
            raise ConfigError("n_frames must be >= 1 and detector_px >= 16")
        if not 0 < self.size_nm[0] <= self.size_nm[1]:
            raise ConfigError(f"size_nm must be an increasing positive range, got {self.size_nm}")
        return self

    @property
    def pixel_s(self) -> float:
        """Reciprocal-space size of one detector pixel, 1/nm (small-angle approximation)."""
        return self.pixel_size_m / (self.wavelength_A * 0.1e-9 * self.distance_m) * 1e-9

    @property
    def grid(self) -> Grid:
        """Real-space grid whose FFT samples the detector twice as finely in each direction."""
        return Grid(2 * self.detector_px, 1.0 / (self.detector_px * self.pixel_s))

    @property
    def beam_center(self) -> float:
        """fs = ss beam centre in pixels (pixel (0, 0) centre = 0.0): the FFT's zero frequency."""
        return self.detector_px / 2 - 0.25

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SpiConfig":
        data = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class SpiFrame:
    """One simulated SPI frame and its truth."""

    frame: np.ndarray  #: int32 photon counts (ss, fs)
    kind: int  #: index into SPI_KIND_NAMES
    shape: str  #: particle shape, unintended object type, or "none"
    size_nm: float
    n_particles: int
    photons: float  #: expected scattered photons on good pixels (without background)
    separation: float = 0.0  #: multi: largest projected centre distance / mean diameter


@lru_cache(maxsize=8)
def detector_mask(config: SpiConfig) -> np.ndarray:
    """int8 mask, 1 = good: beamstop disc and a horizontal gap through the beam are 0."""
    n, c = config.detector_px, config.beam_center
    ss, fs = np.mgrid[0:n, 0:n]
    mask = np.hypot(ss - c, fs - c) > config.beamstop_px
    gap_start = int(round(c - config.gap_px / 2 + 0.5))
    mask[gap_start: gap_start + config.gap_px] = False
    return mask.astype(np.int8)


@lru_cache(maxsize=8)
def background_map(config: SpiConfig) -> np.ndarray:
    """Expected background photons per pixel: a flat floor plus gas scatter near the beam."""
    n, c = config.detector_px, config.beam_center
    ss, fs = np.mgrid[0:n, 0:n]
    r = np.hypot(ss - c, fs - c)
    return (config.background * (1.0 + 30.0 / (1.0 + (r / 8.0) ** 2))).astype(np.float32)


@lru_cache(maxsize=8)
def _reference_power(config: SpiConfig) -> float:
    """Summed |FFT|^2 of a reference sphere (Parseval), which ``photons_ref`` photons match."""
    density = np.zeros((config.grid.n,) * 2, np.float32)
    add_particle(density, config.grid, "sphere", REFERENCE_SIZE_NM, (0.0, 0.0), np.random.default_rng(0))
    return float(density.size * np.sum(density.astype(np.float64) ** 2))


def _cluster_centres(rng: np.random.Generator, radii) -> list:
    """(y, x) nm centres of touching spheres of ``radii``, each stuck to a random earlier one."""
    centres = [np.zeros(3)]
    for radius in radii[1:]:
        anchor = rng.integers(len(centres))
        direction = rng.normal(size=3)
        gap = (radii[anchor] + radius) * rng.uniform(1.0, 1.2)
        centres.append(centres[anchor] + gap * direction / np.linalg.norm(direction))
    mean = np.mean(centres, axis=0)
    return [(c[1] - mean[1], c[0] - mean[0]) for c in centres]


def _draw_particles(config: SpiConfig, kind: int, rng: np.random.Generator, density: np.ndarray):
    """Add the frame's objects into ``density``; return (shape name, size nm, count, separation)."""
    grid = config.grid
    if kind in (SINGLE, MULTI):
        shape = config.shapes[rng.integers(len(config.shapes))]
        size = rng.uniform(*config.size_nm)
        count = 1 if kind == SINGLE else int(rng.integers(2, 4))
        sizes = size * rng.uniform(0.9, 1.1, count) if count > 1 else [size]
        centres = _cluster_centres(rng, [s / 2 for s in sizes])
        for centre, each in zip(centres, sizes):
            add_particle(density, grid, shape, each, centre, rng)
        spread = max(np.hypot(a[0] - b[0], a[1] - b[1]) for a in centres for b in centres)
        return shape, float(size), count, float(spread / np.mean(sizes))
    what = UNINTENDED_SHAPES[rng.integers(len(UNINTENDED_SHAPES))]
    if what == "droplet":  # water: ~0.75 of protein's electron density
        radius = rng.uniform(75.0, 175.0)
        add_ellipsoid(density, grid, (radius,) * 3, (0.0, 0.0), rng, weight=0.75)
        return what, 2 * radius, 1, 0.0
    if what == "rod":
        length, width = rng.uniform(250.0, 450.0), rng.uniform(15.0, 35.0)
        add_ellipsoid(density, grid, (length / 2, width / 2, width / 2), (0.0, 0.0), rng)
        return what, length, 1, 0.0
    radii = rng.uniform(8.0, 16.0, int(rng.integers(8, 25)))
    for centre, radius in zip(_cluster_centres(rng, radii), radii):
        add_ellipsoid(density, grid, (radius,) * 3, centre, rng)
    return what, float(2 * np.cbrt(np.sum(radii**3))), len(radii), 0.0


def expected_pattern(config: SpiConfig, density: np.ndarray) -> np.ndarray:
    """Expected photons per detector pixel at full fluence: |FFT|^2 summed over 2x2 fine samples."""
    amplitude = scipy.fft.fft2(density.astype(np.complex64), workers=1)
    power = scipy.fft.fftshift(amplitude.real**2 + amplitude.imag**2)
    n = config.detector_px
    binned = power.reshape(n, 2, n, 2).sum(axis=(1, 3))
    return (binned * (config.photons_ref / _reference_power(config))).astype(np.float32)


def render_spi_frame(config: SpiConfig, index: int) -> SpiFrame:
    """Render frame ``index`` (depends only on ``config`` and ``index``)."""
    rng = np.random.default_rng([config.seed, index])
    weights = np.asarray(config.kind_weights, float)
    kind = int(rng.choice(4, p=weights / weights.sum()))
    mask = detector_mask(config)
    expected = np.zeros(mask.shape, np.float32)
    shape, size, count, separation = "none", 0.0, 0, 0.0
    if kind != NO_HIT:
        density = np.zeros((config.grid.n,) * 2, np.float32)
        shape, size, count, separation = _draw_particles(config, kind, rng, density)
        expected = expected_pattern(config, density) * np.float32(rng.uniform(*config.fluence_range))
    photons = float(np.sum(expected * mask))
    counts = np.random.default_rng([config.seed, index, 1]).poisson(expected + background_map(config))
    return SpiFrame((counts * mask).astype(np.int32), kind, shape, size, count, photons, separation)


def simulate_spi_run(path: Union[str, Path], config: SpiConfig) -> Dict[str, object]:
    """Write ``config.n_frames`` SPI frames to ``path`` (CXI layout) and ``NAME.truth.h5``.

    Returns a summary: ``path``, ``truth_path``, ``counts`` per kind, ``seconds``, ``frames_per_s``.
    """
    config.validate()
    path, sidecar = Path(path), truth_path(path)
    start = time.perf_counter()
    with atomic_run_files(path, sidecar) as (tmp_run, tmp_truth):
        with h5py.File(tmp_run, "w", libver=LIBVER) as run:
            truth = _write_frames(_create_spi_file(run, config), config)
        _write_truth(tmp_truth, config, truth)
    seconds = time.perf_counter() - start
    counts = {name: int(np.sum(truth["kind"] == i)) for i, name in enumerate(SPI_KIND_NAMES)}
    return {"path": str(path), "truth_path": str(sidecar), "counts": counts,
            "seconds": seconds, "frames_per_s": config.n_frames / seconds}


def _create_spi_file(run: h5py.File, config: SpiConfig) -> h5py.Dataset:
    """CXI metadata (mask, beam centre, geometry, wavelength); returns the empty frame stack."""
    run.attrs["simulation_config"] = config.to_json()
    run.attrs["generator"] = f"mpireduce.simulate.spi {__version__}"
    run.create_dataset("cxi_version", data=150)
    data = run.create_group("entry_1/data_1")
    options = h5_compression(config.compression)
    data.create_dataset("mask", data=detector_mask(config), **options)
    data.create_dataset("timestamp", data=psana_timestamps(config.seed, config.n_frames))
    detector = run.create_group(DETECTOR_GROUP)
    for name, value in (("beam_center_fs_px", config.beam_center), ("beam_center_ss_px", config.beam_center),
                        ("distance", config.distance_m), ("x_pixel_size", config.pixel_size_m),
                        ("y_pixel_size", config.pixel_size_m)):
        detector.create_dataset(name, data=np.float64(value))
    source = run.create_group(SOURCE_GROUP)
    source.create_dataset("wavelength_A", data=np.float64(config.wavelength_A))
    source.create_dataset("photon_energy_eV", data=np.float64(HC_EV_A / config.wavelength_A))
    n = config.detector_px
    return data.create_dataset("data", shape=(config.n_frames, n, n), dtype=np.int32, chunks=(1, n, n), **options)


def _write_frames(frames: h5py.Dataset, config: SpiConfig) -> Dict[str, np.ndarray]:
    columns = {"kind": [], "shape": [], "size_nm": [], "n_particles": [], "photons": [], "separation": []}
    for i in range(config.n_frames):
        rendered = render_spi_frame(config, i)
        frames[i] = rendered.frame
        for name in columns:
            columns[name].append(getattr(rendered, name))
    dtypes = {"kind": np.int8, "shape": "S16", "size_nm": np.float32, "n_particles": np.int16, "photons": np.float32,
              "separation": np.float32}
    return {name: np.asarray(values, dtype=dtypes[name]) for name, values in columns.items()}


def _write_truth(path: Path, config: SpiConfig, truth: Dict[str, np.ndarray]) -> None:
    with h5py.File(path, "w", libver=LIBVER) as out:
        out.attrs["simulation_config"] = config.to_json()
        out.attrs["generator"] = f"mpireduce.simulate.spi {__version__}"
        for name, values in truth.items():
            out.create_dataset(name, data=values)
        out["kind"].attrs["names"] = list(SPI_KIND_NAMES)


@dataclass(frozen=True)
class SpiTruth:
    """Truth of a simulated SPI run: per event kind, shape, size, particle count, photons."""

    kind: np.ndarray
    kind_names: Tuple[str, ...]
    shape: np.ndarray  #: str
    size_nm: np.ndarray
    n_particles: np.ndarray
    photons: np.ndarray
    separation: Optional[np.ndarray] = None  #: multi hits' projected spread (absent from older files)


def read_spi_truth(path: Union[str, Path]) -> SpiTruth:
    """Load the truth sidecar of an SPI run (given the run or the sidecar)."""
    path = Path(path)
    sidecar = path if path.name.endswith(".truth.h5") else truth_path(path)
    try:
        with h5py.File(sidecar, "r") as f:
            return SpiTruth(kind=f["kind"][()], kind_names=tuple(str(n) for n in f["kind"].attrs["names"]),
                            shape=np.char.decode(f["shape"][()]).astype(str), size_nm=f["size_nm"][()],
                            n_particles=f["n_particles"][()], photons=f["photons"][()],
                            separation=f["separation"][()] if "separation" in f else None)
    except (OSError, KeyError) as exc:
        raise InputError(f"cannot read SPI truth {sidecar}: {exc}; was it written by simulate_spi_run?") from exc
