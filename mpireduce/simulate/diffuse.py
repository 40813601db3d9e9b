"""SFX hit frames with and without diffuse scattering between the Bragg spots.

Every frame is a crystal hit rendered by :mod:`.sfx` (``hit_fraction`` is forced to 1);
a fraction of them also scatter diffusely, the way crystals with correlated disorder do:

* **halos** (thermal diffuse / liquid-like motions): around every reciprocal-lattice
  point G, intensity ``|F_G|^2 / (1 + (|q - G| / gamma)^2)``, a Lorentzian whose width
  ``gamma = 1 / (2 pi xi)`` comes from a correlation length ``xi`` of 10-40 Angstrom.
  It is evaluated at each pixel's own ``q`` on the Ewald sphere, summed over the 8
  lattice points around it, so halos appear also where the Bragg peak itself is not excited;
* **streaks** (short-range order along one real-space axis, in about half of the
  diffuse frames): rods through the lattice points along one reciprocal axis, with a
  Lorentzian profile across the rod, cut by the Ewald sphere into lines on the detector.

Both follow the TDS envelope ``q^2 exp(-B q^2 / 2)``, with the run's ``|F|^2``
(:func:`~.lattice.wilson_intensities`), the lattice orientations of the frame, pixel
solid angle and polarisation. A frame's ``strength`` is the diffuse photons over the
background photons on the detector, log-uniform in ``strength_range`` (weak ones are
barely visible). Every frame, diffuse or not, also gets a random isotropic solvent ring
(jet thickness varies shot to shot), so the diffuse class is not simply "brighter".

Random streams: ``default_rng([seed, i, DIFFUSE_STREAM])`` for the diffuse choice and
parameters, ``[seed, i, DIFFUSE_STREAM, 1]`` for the Poisson photons. Runs use the CXI
layout of :func:`~.runfile.simulate_run`; the truth sidecar has the SFX spot tables plus
``/kind`` (int8, names ``DIFFUSE_KIND_NAMES``), ``/diffuse`` (bool), ``/sfx_kind`` (the
:data:`~.sfx.KIND_NAMES` kind), ``/diffuse_strength``, ``/correlation_length_A`` and ``/streaks``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import h5py
import numpy as np

from .detector import REFERENCE_SOLID_ANGLE, DetectorLayout, make_detector_layout
from .lattice import wilson_intensities
from .runfile import LIBVER, _create_run_file, _saturate, _write_truth, atomic_run_files, truth_path
from .sfx import KIND_NAMES, SimulationConfig, render_frame

DIFFUSE_KIND_NAMES = ("non_diffuse", "diffuse")
DIFFUSE_STREAM = 0xD1FF
CORRELATION_RANGE_A = (10.0, 40.0)  #: correlation length xi of the halos, Angstrom
STREAK_WIDTH_A = (60.0, 150.0)  #: correlation length across the rods, Angstrom
STREAK_PROBABILITY = 0.5  #: chance that a diffuse frame also has streaks
SOLVENT_RANGE = (0.0, 0.4)  #: extra isotropic solvent ring, fraction of the background
PathLike = Union[str, Path]


@dataclass(frozen=True)
class DiffuseFrame:
    """One simulated frame with its diffuse ground truth."""

    frame: np.ndarray  #: int32 photon counts, or float32 expected photons without noise
    diffuse: bool
    strength: float  #: diffuse photons / background photons (0 when not diffuse)
    correlation_length_A: float  #: halo correlation length (0 when not diffuse)
    streaks: bool
    sfx_kind: int  #: index into KIND_NAMES
    spots: Dict[str, np.ndarray]
    bases: np.ndarray


@dataclass(frozen=True)
class _PixelGeometry:
    """Per-pixel scattering vectors (on the Ewald sphere) and intensity weights."""

    q: np.ndarray  #: (n_pixels, 3) float64, 1/Angstrom, q = s1 - s0
    q2: np.ndarray  #: (n_pixels,) |q|^2
    weight: np.ndarray  #: (n_pixels,) solid angle x polarisation x transmission


@lru_cache(maxsize=4)
def _pixel_geometry(layout: DetectorLayout) -> _PixelGeometry:
    """Scattering vector and weight of every pixel (cached per layout)."""
    ss, fs = np.indices(layout.shape, dtype=np.float64)
    x = ((fs - layout.beam_center_fs) * layout.pixel_size_m).ravel()
    y = ((ss - layout.beam_center_ss) * layout.pixel_size_m).ravel()
    length = np.sqrt(x * x + y * y + layout.distance_m**2)
    k = 1.0 / layout.wavelength_A
    q = np.stack([x / length * k, y / length * k, (layout.distance_m / length - 1.0) * k], axis=1)
    cos2t = layout.distance_m / length
    solid = (layout.pixel_size_m / layout.distance_m) ** 2 * cos2t**3 / REFERENCE_SOLID_ANGLE
    polarisation = 1.0 - (x / length) ** 2
    weight = solid * polarisation * layout.transmission.ravel()
    return _PixelGeometry(q, np.einsum("ij,ij->i", q, q), weight)


def diffuse_pattern(layout: DetectorLayout, bases: np.ndarray, seed: int, b_factor: float,
                    xi_A: float, streak: Optional[Tuple[int, float]] = None) -> np.ndarray:
    """Diffuse intensity (arbitrary units, float64 frame) of the lattices ``bases``.

    ``bases`` is (n, 3, 3) lab-frame reciprocal bases (rows a*, b*, c*); ``xi_A`` the
    halo correlation length; ``streak = (axis, width_A)`` adds rods along reciprocal axis
    ``axis`` with Lorentzian cross-section of width ``1 / (2 pi width_A)``. Each pixel sums
    the 8 lattice points of its reciprocal cell, each Lorentzian tapered by the window
    ``prod_j cos^2(pi d_j / 2)`` (``d_j`` the fractional distance along axis j), a partition
    of unity that keeps the pattern continuous across cell boundaries.
    """
    geo = _pixel_geometry(layout)
    gamma2 = (1.0 / (2.0 * np.pi * xi_A)) ** 2
    total = np.zeros(len(geo.q2))
    for basis in bases:
        frac = geo.q @ np.linalg.inv(basis)  # q = hkl @ basis
        lower = np.floor(frac)
        t = frac - lower
        tq = t @ basis  # q minus the cell's lower corner
        tq2 = np.einsum("ij,ij->i", tq, tq)
        w0 = np.cos(0.5 * np.pi * t) ** 2  # window of the lower corner per axis; upper: 1 - w0
        table = _StructureTable(lower, seed)
        if streak is not None:
            axis, width_A = streak
            unit = basis[axis] / np.linalg.norm(basis[axis])
            tu, rod_gamma2 = tq @ unit, (1.0 / (2.0 * np.pi * width_A)) ** 2
        for corner in np.ndindex(2, 2, 2):
            cq = np.asarray(corner, float) @ basis
            d2 = tq2 - 2.0 * tq @ cq + cq @ cq  # |q - G|^2
            weight = table(lower + corner) * np.prod(np.where(corner, 1.0 - w0, w0), axis=1)
            total += weight / (1.0 + d2 / gamma2)
            if streak is not None:  # distance across the rod through G along ``axis``
                total += weight / (1.0 + (d2 - (tu - cq @ unit) ** 2) / rod_gamma2)
    envelope = geo.q2 * np.exp(-0.5 * b_factor * geo.q2)
    return (total * envelope * geo.weight).reshape(layout.shape)


class _StructureTable:
    """``|F_hkl|^2`` of the run's structure looked up from a small table over a box of hkl."""

    def __init__(self, lower: np.ndarray, seed: int) -> None:
        self.origin = lower.min(axis=0).astype(np.int64)
        size = lower.max(axis=0).astype(np.int64) - self.origin + 2
        grid = np.stack(np.meshgrid(*(np.arange(n) for n in size), indexing="ij"), axis=-1).reshape(-1, 3)
        self.table = wilson_intensities(grid + self.origin, seed).reshape(tuple(size))

    def __call__(self, hkl: np.ndarray) -> np.ndarray:
        i = hkl.astype(np.int64) - self.origin
        return self.table[i[:, 0], i[:, 1], i[:, 2]]


def _solvent_ring(layout: DetectorLayout, rng: np.random.Generator) -> np.ndarray:
    """An isotropic ring (random position and width), scaled to ``background``."""
    geo = _pixel_geometry(layout)
    q = np.sqrt(geo.q2)
    q0, width = rng.uniform(0.15, 0.35), rng.uniform(0.03, 0.08)
    ring = np.exp(-0.5 * ((q - q0) / width) ** 2) * geo.weight
    return ring.reshape(layout.shape)


def render_diffuse_frame(config: SimulationConfig, index: int, layout: Optional[DetectorLayout] = None,
                         diffuse_fraction: float = 0.5, noise: bool = True,
                         strength_range: Tuple[float, float] = (0.03, 0.3),
                         force: Optional[bool] = None) -> DiffuseFrame:
    """Frame ``index``: an SFX hit, diffuse with probability ``diffuse_fraction``.

    ``force`` overrides the random diffuse choice (True / False) without changing any other
    draw, so the same crystal can be rendered with and without diffuse scattering.
    """
    config = dataclasses.replace(config, hit_fraction=1.0).validate()
    layout = layout or make_detector_layout(config)
    base = render_frame(config, index, layout, noise=False)
    rng = np.random.default_rng([config.seed, index, DIFFUSE_STREAM])
    diffuse = bool(rng.random() < diffuse_fraction) if force is None else bool(force)
    log_lo, log_hi = np.log(strength_range)
    strength = float(np.exp(rng.uniform(log_lo, log_hi)))
    xi = float(rng.uniform(*CORRELATION_RANGE_A))
    streaks = bool(rng.random() < STREAK_PROBABILITY)
    streak = (int(rng.integers(3)), float(rng.uniform(*STREAK_WIDTH_A))) if streaks else None
    solvent = rng.uniform(*SOLVENT_RANGE)
    expected = base.frame.astype(np.float64)
    bg_total = float(np.sum(layout.background))
    ring = _solvent_ring(layout, rng)
    expected += ring * (solvent * bg_total / max(float(ring.sum()), 1e-12))
    if diffuse:
        pattern = diffuse_pattern(layout, base.bases, config.seed, config.b_factor, xi, streak)
        expected += pattern * (strength * bg_total / max(float(pattern.sum()), 1e-12))
    hot = layout.hot_index
    if noise:
        frame = np.random.default_rng([config.seed, index, DIFFUSE_STREAM, 1]).poisson(expected).astype(np.int32)
    else:
        frame = expected.astype(np.float32)
    frame.reshape(-1)[hot] = layout.hot_value
    return DiffuseFrame(frame, diffuse, strength if diffuse else 0.0, xi if diffuse else 0.0,
                        diffuse and streaks, base.kind, base.spots, base.bases)


def simulate_diffuse_run(path: PathLike, config: SimulationConfig, diffuse_fraction: float = 0.5,
                         strength_range: Tuple[float, float] = (0.03, 0.3)) -> Dict[str, object]:
    """Write ``config.n_frames`` hit frames (a ``diffuse_fraction`` of them diffuse) to ``path``.

    The run file has the CXI layout of :func:`~.runfile.simulate_run`; the sidecar
    ``NAME.truth.h5`` is described in the module docstring. Returns ``path``,
    ``truth_path``, ``counts`` (per diffuse kind), ``seconds`` and ``frames_per_s``.
    """
    if not 0.0 <= diffuse_fraction <= 1.0:
        raise ValueError(f"diffuse_fraction = {diffuse_fraction} must be between 0 and 1")
    if not 0.0 < strength_range[0] <= strength_range[1]:
        raise ValueError(f"strength_range {strength_range} must be 0 < low <= high")
    config = dataclasses.replace(config, hit_fraction=1.0).validate()
    path, sidecar = Path(path), truth_path(path)
    layout = make_detector_layout(config)
    start = time.perf_counter()
    columns = {"diffuse": [], "diffuse_strength": [], "correlation_length_A": [], "streaks": [], "sfx_kind": []}
    spots, bases = [], []
    with atomic_run_files(path, sidecar) as (tmp_run, tmp_truth):
        with h5py.File(tmp_run, "w", libver=LIBVER) as run:
            frames = _create_run_file(run, config, layout)
            run.attrs["diffuse_fraction"] = diffuse_fraction
            for i in range(config.n_frames):
                r = render_diffuse_frame(config, i, layout, diffuse_fraction, strength_range=strength_range)
                frames[i] = _saturate(r.frame, frames.dtype)
                for name, value in zip(columns, (r.diffuse, r.strength, r.correlation_length_A, r.streaks, r.sfx_kind)):
                    columns[name].append(value)
                spots.append(r.spots)
                bases.append(r.bases)
        diffuse = np.asarray(columns["diffuse"], bool)
        _write_truth(tmp_truth, config, {"kind": diffuse.astype(np.int8), "spots": spots, "bases": bases})
        _add_diffuse_truth(tmp_truth, columns, diffuse_fraction, strength_range)
    seconds = time.perf_counter() - start
    counts = {"non_diffuse": int(np.sum(~diffuse)), "diffuse": int(np.sum(diffuse))}
    return {"path": str(path), "truth_path": str(sidecar), "counts": counts,
            "seconds": seconds, "frames_per_s": config.n_frames / seconds}


def _add_diffuse_truth(path: Path, columns: dict, fraction: float, strength_range: Tuple[float, float]) -> None:
    """Relabel ``/kind`` as diffuse / non-diffuse and add the per-frame diffuse truth."""
    dtypes = {"diffuse": bool, "diffuse_strength": np.float32, "correlation_length_A": np.float32,
              "streaks": bool, "sfx_kind": np.int8}
    with h5py.File(path, "a") as out:
        out["kind"].attrs["names"] = list(DIFFUSE_KIND_NAMES)
        for name, values in columns.items():
            out.create_dataset(name, data=np.asarray(values, dtypes[name]))
        out["sfx_kind"].attrs["names"] = list(KIND_NAMES)
        out["diffuse_strength"].attrs["description"] = "diffuse photons / background photons on the detector"
        out.attrs["diffuse_fraction"] = fraction
        out.attrs["strength_range"] = np.asarray(strength_range, np.float64)


def read_diffuse_labels(path: PathLike) -> Dict[str, np.ndarray]:
    """``diffuse``, ``diffuse_strength``, ``correlation_length_A``, ``streaks`` and ``sfx_kind``
    of a run written by :func:`simulate_diffuse_run` (given the run or its sidecar)."""
    path = Path(path)
    sidecar = path if path.name.endswith(".truth.h5") else truth_path(path)
    with h5py.File(sidecar, "r") as f:
        names = ("diffuse", "diffuse_strength", "correlation_length_A", "streaks", "sfx_kind")
        return {name: f[name][()] for name in names}
