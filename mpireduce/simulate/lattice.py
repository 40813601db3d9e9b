"""Crystals and Bragg reflections: unit cells, random orientations, the Ewald construction.

Conventions: lengths in Angstrom, reciprocal lengths in 1/Angstrom (crystallographers'
convention, no factor 2*pi). The beam travels along lab +z, so the incident wave vector is
``s0 = (0, 0, 1/lambda)``. A reciprocal-lattice vector ``q = h a* + k b* + l c*`` (lab frame)
diffracts along ``s1 = s0 + q``; its excitation error ``e = |s0 + q| - 1/lambda`` is zero
when it lies exactly on the Ewald sphere. The flat detector is normal to the beam at
distance ``D``; lab x maps to the fast-scan (fs) axis and lab y to the slow-scan (ss) axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Tuple

import numpy as np

Cell = Tuple[float, float, float, float, float, float]

#: Unit cells (a, b, c in Angstrom; alpha, beta, gamma in degrees) of well-known SFX samples.
UNIT_CELLS = {
    "lysozyme": (79.1, 79.1, 37.9, 90.0, 90.0, 90.0),  # tetragonal, P4(3)2(1)2
    "thermolysin": (93.0, 93.0, 131.0, 90.0, 90.0, 120.0),  # hexagonal, P6(1)22
    "trypsin": (54.9, 58.6, 67.4, 90.0, 90.0, 90.0),  # orthorhombic, P2(1)2(1)2(1)
}


@dataclass(frozen=True)
class PartialityModel:
    """Width of the excitation-error Gaussian that makes a reflection partial.

    Three independent contributions add in quadrature (all as rms, in 1/Angstrom):
    the finite crystal domain (``1/L``), the mosaic spread (``eta * |q|``) and the X-ray
    bandwidth (``bandwidth * lambda * |q|^2 / 2``, from d e / d(1/lambda) = -2 sin^2 theta).
    """

    domain_size_A: float = 5000.0
    mosaicity_rad: float = 8.7e-4
    bandwidth: float = 0.002

    def sigma(self, q: np.ndarray, wavelength_A: float) -> np.ndarray:
        """Rms excitation-error width for reciprocal vectors of length ``q``."""
        q = np.asarray(q, dtype=np.float64)
        size = 1.0 / self.domain_size_A
        mosaic = self.mosaicity_rad * q
        band = self.bandwidth * wavelength_A * q * q / 2.0
        return np.sqrt(size * size + mosaic * mosaic + band * band)


@dataclass(frozen=True)
class Reflections:
    """Reflections of one lattice near the Ewald sphere (arrays of equal length)."""

    hkl: np.ndarray  #: (n, 3) int32 Miller indices
    s1: np.ndarray  #: (n, 3) float64 diffracted wave vectors s0 + q, 1/Angstrom
    excitation: np.ndarray  #: (n,) float64 excitation error |s0 + q| - 1/lambda
    partiality: np.ndarray  #: (n,) float64 Gaussian partiality in (0, 1]
    d_A: np.ndarray  #: (n,) float64 resolution 1/|q|


def cell_matrix(cell: Cell) -> np.ndarray:
    """Real-space basis as rows (a, b, c) in Angstrom: a along x, b in the xy plane."""
    a, b, c = cell[:3]
    alpha, beta, gamma = np.radians(cell[3:])
    cy = (np.cos(alpha) - np.cos(beta) * np.cos(gamma)) / np.sin(gamma)
    cz = np.sqrt(1.0 - np.cos(beta) ** 2 - cy**2)
    return np.array(
        [
            [a, 0.0, 0.0],
            [b * np.cos(gamma), b * np.sin(gamma), 0.0],
            [c * np.cos(beta), c * cy, c * cz],
        ]
    )


def reciprocal_matrix(cell: Cell) -> np.ndarray:
    """Reciprocal basis as rows (a*, b*, c*) in 1/Angstrom, with a_i . b*_j = delta_ij."""
    return np.linalg.inv(cell_matrix(cell)).T


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniformly distributed over SO(3) (from a random unit quaternion)."""
    w, x, y, z = rng.standard_normal(4)
    norm = np.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def oriented_reciprocal_basis(cell: Cell, rotation: np.ndarray) -> np.ndarray:
    """Lab-frame reciprocal basis, rows (a*, b*, c*): ``q_lab = hkl @ basis``."""
    return reciprocal_matrix(cell) @ rotation.T


@lru_cache(maxsize=8)
def miller_indices(cell: Cell, d_min_A: float) -> Tuple[np.ndarray, np.ndarray]:
    """All (h, k, l) != 0 with resolution d >= ``d_min_A``, and their |q|^2.

    Returns ``(hkl, q2)`` as read-only float32 arrays of shapes (n, 3) and (n,), cached per
    cell and resolution: float32 halves the memory traffic of the per-frame Ewald cut and
    holds Miller indices exactly.
    """
    lengths = np.linalg.norm(cell_matrix(cell), axis=1)
    limits = np.floor(lengths / d_min_A).astype(int)  # |h| <= |q| |a|
    axes = [np.arange(-m, m + 1, dtype=np.int32) for m in limits]
    hkl = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    q2 = np.einsum("ij,ij->i", *(2 * [hkl @ reciprocal_matrix(cell)]))
    keep = (q2 <= 1.0 / d_min_A**2) & (q2 > 0)
    hkl, q2 = np.ascontiguousarray(hkl[keep], dtype=np.float32), q2[keep].astype(np.float32)
    hkl.setflags(write=False)
    q2.setflags(write=False)
    return hkl, q2


def excited_reflections(
    cell: Cell,
    basis: np.ndarray,
    wavelength_A: float,
    d_min_A: float,
    model: PartialityModel,
    n_sigma: float = 3.5,
) -> Reflections:
    """Reflections of the lattice ``basis`` within ``n_sigma`` widths of the Ewald sphere."""
    all_hkl, all_q2 = miller_indices(cell, round(d_min_A, 4))
    k = 1.0 / wavelength_A
    # near the sphere |s0 + q| - k ~= q_z + |q|^2 / (2k): a cheap float32 first cut
    approx = all_hkl @ basis[:, 2].astype(np.float32) + all_q2 * np.float32(wavelength_A / 2.0)
    width = model.sigma(np.sqrt(all_q2.max(initial=0.0)), wavelength_A)
    hkl = all_hkl[np.abs(approx) < 1.5 * n_sigma * width].astype(np.float64)
    q = hkl @ basis
    q2 = np.einsum("ij,ij->i", q, q)
    s1 = q + [0.0, 0.0, k]
    excitation = np.sqrt(np.einsum("ij,ij->i", s1, s1)) - k
    sigma = model.sigma(np.sqrt(q2), wavelength_A)
    keep = np.abs(excitation) < n_sigma * sigma
    partiality = np.exp(-0.5 * (excitation[keep] / sigma[keep]) ** 2)
    hkl = hkl[keep].astype(np.int32)
    return Reflections(hkl, s1[keep], excitation[keep], partiality, 1.0 / np.sqrt(q2[keep]))


def project_to_detector(
    s1: np.ndarray, distance_m: float, pixel_size_m: float, beam_center_fs: float, beam_center_ss: float
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where rays along ``s1`` hit the detector plane: ``(fs, ss, forward)`` in pixels.

    ``forward`` is False for rays that travel away from the detector (s1_z <= 0); their
    fs/ss are NaN.
    """
    s1 = np.asarray(s1, dtype=np.float64)
    forward = s1[:, 2] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(forward, distance_m / pixel_size_m / s1[:, 2], np.nan)
    return beam_center_fs + s1[:, 0] * scale, beam_center_ss + s1[:, 1] * scale, forward


def scattering_polarisation(s1: np.ndarray) -> np.ndarray:
    """Polarisation factor for a beam linearly polarised along lab x (as at XFELs)."""
    s1 = np.asarray(s1, dtype=np.float64)
    return 1.0 - (s1[:, 0] ** 2) / np.einsum("ij,ij->i", s1, s1)


def wilson_intensities(hkl: np.ndarray, seed: int) -> np.ndarray:
    """|F|^2 of a random acentric structure: exponentially distributed, mean 1.

    Each value depends only on (seed, Friedel pair of hkl), so a run has one consistent
    "true" structure (space group P1 plus Friedel's law) that frames sample partially.
    """
    hkl = np.asarray(hkl, dtype=np.int64)
    first_nonzero = np.where(hkl[:, 0] != 0, hkl[:, 0], np.where(hkl[:, 1] != 0, hkl[:, 1], hkl[:, 2]))
    canon = np.where((first_nonzero < 0)[:, None], -hkl, hkl) + 2048  # 12 bits per index
    key = ((canon[:, 0] << 24) | (canon[:, 1] << 12) | canon[:, 2]).astype(np.uint64)
    u = _uniform_hash(key, seed)
    return -np.log1p(-u)


def _uniform_hash(key: np.ndarray, seed: int) -> np.ndarray:
    """Uniform numbers in [0, 1) from integer keys (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        z = key + np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
