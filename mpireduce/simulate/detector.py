"""The simulated detector: panels and gaps, beamstop, bad pixels, background, photon noise.

The frame is a grid of equal panels separated by insensitive gaps (0 in the data and in
the mask). A beamstop disc with a supporting arm shadows the direct beam; a few dead
pixels read 0 and a few hot pixels read a large constant (only some of them are masked).
Background is air scatter that falls off with scattering angle plus a broad water ring
at d ~ 3.45 Angstrom, weighted by pixel solid angle and X-ray polarisation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Tuple

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ..geometry import DetectorGeometry

if TYPE_CHECKING:  # pragma: no cover
    from .sfx import SimulationConfig

DETECTOR_SIZES = {"1M": (1024, 1024), "4M": (2048, 2048)}
GAP_PX = 4
LAYOUT_STREAM = 0x5EED_DE7  #: rng stream tag of the per-run detector defects

# Background at background=1, photons per 75 um pixel at 0.1 m (scaled by solid angle).
AIR_PEAK, AIR_Q0 = 0.6, 0.03  # photons, 1/Angstrom: air ~ AIR_PEAK / (1 + (q/AIR_Q0)^2)
FLOOR = 0.03  # photons: flat part (fluorescence, electronic leakage)
WATER_PEAK, WATER_Q, WATER_SIGMA = 1.2, 1.0 / 3.45, 0.04  # photons, 1/A, 1/A
REFERENCE_PIXEL_M = 75e-6
REFERENCE_SOLID_ANGLE = (REFERENCE_PIXEL_M / 0.1) ** 2
BEAMSTOP_RADIUS_M, BEAMSTOP_ARM_M, BEAMSTOP_TRANSMISSION = 0.9e-3, 0.3e-3, 0.01


@dataclass(frozen=True, eq=False)
class DetectorLayout:
    """Everything about the detector that is the same for all frames of a run.

    ``background`` is the expected photons per pixel (float32) at background scale 1:
    air scatter plus water ring, zero in gaps and dead pixels, attenuated behind the
    beamstop; ``background3`` is its sum over the 3x3 pixels around each pixel.
    """

    shape: Tuple[int, int]
    panel_shape: Tuple[int, int]
    panel_grid: Tuple[int, int]
    beam_center_fs: float
    beam_center_ss: float
    pixel_size_m: float
    distance_m: float
    wavelength_A: float
    mask: np.ndarray  #: int8, 1 = good pixel
    transmission: np.ndarray  #: float32: 1 sensitive, 0 gap/dead, small behind the beamstop
    background: np.ndarray
    background3: np.ndarray
    photons: "BackgroundPhotons"  #: sampler of Poisson background frames
    hot_index: np.ndarray  #: flat indices of hot pixels
    hot_value: np.ndarray  #: their constant int32 readings
    d_min_A: float  #: resolution at the detector corner farthest from the beam

    def geometry(self) -> DetectorGeometry:
        """The layout as the shared :class:`mpireduce.geometry.DetectorGeometry`."""
        return DetectorGeometry(
            shape=self.shape,
            beam_center_fs=self.beam_center_fs,
            beam_center_ss=self.beam_center_ss,
            mask=self.mask,
            pixel_size_m=self.pixel_size_m,
            distance_m=self.distance_m,
            wavelength_A=self.wavelength_A,
            panel_shape=self.panel_shape,
        )


def parse_detector_size(text: str) -> Tuple[int, int]:
    """Frame shape (ss, fs) of ``1M``, ``4M`` or ``SSxFS`` (e.g. ``256x256``)."""
    if text.upper() in DETECTOR_SIZES:
        return DETECTOR_SIZES[text.upper()]
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 32:
        raise ConfigError(f"detector {text!r} is not 1M, 4M or SSxFS with both sides >= 32 (e.g. 256x256)")
    return int(match[1]), int(match[2])


def default_beam_center(shape: Tuple[int, int]) -> Tuple[float, float]:
    """Beam centre (fs, ss) near, but deliberately not at, the frame centre."""
    ss, fs = shape
    return (fs - 1) / 2 + 0.0123 * fs, (ss - 1) / 2 - 0.0071 * ss


def default_pixel_size(shape: Tuple[int, int]) -> float:
    """75 um pixels; frames under 1024 px get binned pixels that cover a 1M's angles.

    A 256x256 test frame thus behaves like a 4x4-binned 1M detector (300 um pixels,
    2 Angstrom at the corner) instead of seeing only low-resolution spots.
    """
    return REFERENCE_PIXEL_M * max(1.0, 1024 / min(shape))


def panel_grid_for(shape: Tuple[int, int]) -> Tuple[int, int]:
    """Panels along (ss, fs): about 256 x 512 pixels each, at least 2 x 2."""
    return max(2, shape[0] // 256), max(2, shape[1] // 512)


def make_detector_layout(config: "SimulationConfig") -> DetectorLayout:
    """The detector of a simulated run (cached: frames of one run share it)."""
    shape = parse_detector_size(config.detector)
    fs0, ss0 = default_beam_center(shape)
    bc_fs = fs0 if config.beam_center_fs is None else float(config.beam_center_fs)
    bc_ss = ss0 if config.beam_center_ss is None else float(config.beam_center_ss)
    physics = (config.pixel_size_m, config.distance_m, config.wavelength_A)
    return _layout(shape, bc_fs, bc_ss, *physics, config.seed)


@lru_cache(maxsize=4)
def _layout(shape, bc_fs, bc_ss, pixel_size_m, distance_m, wavelength_A, seed) -> DetectorLayout:
    """Build the layout from plain, hashable parameters (so it can be cached)."""
    grid = panel_grid_for(shape)
    panel_shape, sensitive = _panels(shape, grid, GAP_PX)
    shadow = _beamstop(shape, bc_fs, bc_ss, pixel_size_m)
    rng = np.random.default_rng([seed, LAYOUT_STREAM])
    dead, hot, hot_masked = _bad_pixels(rng, sensitive & ~shadow)
    transmission = np.where(shadow, BEAMSTOP_TRANSMISSION, 1.0).astype(np.float32) * sensitive
    transmission.flat[dead] = 0.0
    mask = (sensitive & ~shadow).astype(np.int8)
    mask.flat[dead] = 0
    mask.flat[hot_masked] = 0
    background, d_min = _background_map(shape, bc_fs, bc_ss, pixel_size_m, distance_m, wavelength_A)
    background *= transmission
    layout = DetectorLayout(
        shape=shape,
        panel_shape=panel_shape,
        panel_grid=grid,
        beam_center_fs=bc_fs,
        beam_center_ss=bc_ss,
        pixel_size_m=pixel_size_m,
        distance_m=distance_m,
        wavelength_A=wavelength_A,
        mask=mask,
        transmission=transmission,
        background=background,
        background3=_sum3x3(background),
        photons=BackgroundPhotons(background),
        hot_index=hot,
        hot_value=rng.integers(20_000, 60_000, size=hot.size).astype(np.int32),
        d_min_A=d_min,
    )
    for array in (mask, transmission, background, layout.background3, hot, layout.hot_value):
        array.setflags(write=False)
    return layout


def _panels(shape, grid, gap) -> Tuple[Tuple[int, int], np.ndarray]:
    """Panel shape and the sensitive-pixel map of equal panels separated by ``gap``."""
    sizes = [(n_px - (n - 1) * gap) // n for n_px, n in zip(shape, grid)]
    sensitive = np.zeros(shape, dtype=bool)
    margins = [(n_px - n * size - (n - 1) * gap) // 2 for n_px, n, size in zip(shape, grid, sizes)]
    for i in range(grid[0]):
        s0 = margins[0] + i * (sizes[0] + gap)
        for j in range(grid[1]):
            f0 = margins[1] + j * (sizes[1] + gap)
            sensitive[s0 : s0 + sizes[0], f0 : f0 + sizes[1]] = True
    return (sizes[0], sizes[1]), sensitive


def _beamstop(shape, bc_fs, bc_ss, pixel_size_m) -> np.ndarray:
    """Shadow of a beamstop disc on the beam plus its arm running to the top edge."""
    ss, fs = np.ogrid[: shape[0], : shape[1]]
    radius = max(3.0, BEAMSTOP_RADIUS_M / pixel_size_m)
    half_arm = max(1.0, 0.5 * BEAMSTOP_ARM_M / pixel_size_m)
    disc = (fs - bc_fs) ** 2 + (ss - bc_ss) ** 2 <= radius**2
    arm = (np.abs(fs - bc_fs) <= half_arm) & (ss <= bc_ss)
    return disc | arm


def _bad_pixels(rng: np.random.Generator, candidates: np.ndarray):
    """Flat indices of dead pixels, hot pixels and the hot pixels that are masked."""
    n_dead = max(4, candidates.size // 50_000)
    n_hot = max(4, candidates.size // 100_000)
    chosen = rng.choice(np.flatnonzero(candidates), size=n_dead + n_hot, replace=False)
    dead, hot = np.sort(chosen[:n_dead]), np.sort(chosen[n_dead:])
    return dead, hot, chosen[n_dead : n_dead + n_hot // 2]


def _background_map(shape, bc_fs, bc_ss, pixel_size_m, distance_m, wavelength_A):
    """Air-scatter plus water-ring photons per pixel, and the corner resolution."""
    ss, fs = np.indices(shape, dtype=np.float64)
    x, y = (fs - bc_fs) * pixel_size_m, (ss - bc_ss) * pixel_size_m
    r = np.hypot(x, y)
    two_theta = np.arctan2(r, distance_m)
    q = 2.0 * np.sin(two_theta / 2.0) / wavelength_A
    solid_angle = (pixel_size_m / distance_m) ** 2 * np.cos(two_theta) ** 3 / REFERENCE_SOLID_ANGLE
    polarisation = 1.0 - np.sin(two_theta) ** 2 * (x / np.maximum(r, 1e-12)) ** 2
    weight = solid_angle * polarisation
    air = (AIR_PEAK / (1.0 + (q / AIR_Q0) ** 2) + FLOOR) * weight
    water = WATER_PEAK * np.exp(-0.5 * ((q - WATER_Q) / WATER_SIGMA) ** 2) * weight
    return (air + water).astype(np.float32), 1.0 / float(q.max())


def _sum3x3(image: np.ndarray) -> np.ndarray:
    """Sum over the 3x3 neighbourhood of every pixel (zero outside the frame)."""
    return (ndimage.uniform_filter(image, size=3, mode="constant") * 9.0).astype(np.float32)


class BackgroundPhotons:
    """Poisson background frames whose mean is a fixed map times a per-frame scale.

    The background is drawn as what it is, a Poisson process of photons: a frame gets
    ``N ~ Poisson(scale * sum(map))`` photons and each lands on pixel ``j`` with
    probability ``map[j] / sum(map)``, which makes every pixel an independent
    ``Poisson(scale * map[j])`` count. Pixels are found by inverse-CDF lookup through a
    guide table (Chen & Asau 1974) using uniforms generated already sorted (normalised
    cumulative sums of exponentials), so all table reads walk memory in order. The cost
    scales with the number of photons, not pixels: ~2.5x faster than ``Generator.poisson``
    per frame at the default background.
    """

    def __init__(self, expected: np.ndarray):
        flat = np.asarray(expected, dtype=np.float64).ravel()
        self.shape = tuple(np.shape(expected))
        self.pixels = np.flatnonzero(flat > 0)
        cdf = np.cumsum(flat[self.pixels])
        self.total = float(cdf[-1]) if cdf.size else 0.0
        if cdf.size:
            cdf /= self.total
            cdf[-1] = 1.0
        self.cdf = cdf
        self.guide = np.searchsorted(cdf, np.arange(cdf.size) / max(cdf.size, 1), side="left")

    def sample(self, scale: float, rng: np.random.Generator) -> np.ndarray:
        """An int32 frame of Poisson counts with mean ``scale * expected``."""
        n_photons = int(rng.poisson(scale * self.total)) if scale > 0 and self.total > 0 else 0
        if n_photons == 0:
            return np.zeros(self.shape, dtype=np.int32)
        spacing = np.cumsum(rng.standard_exponential(n_photons + 1))
        u = spacing[:-1] / spacing[-1]  # sorted uniforms in (0, 1)
        slot = self.guide[(u * self.cdf.size).astype(np.intp)]
        behind = np.flatnonzero(self.cdf[slot] <= u)
        while behind.size:  # step to the first pixel whose cdf exceeds u (1-2 steps)
            slot[behind] += 1
            behind = behind[self.cdf[slot[behind]] <= u[behind]]
        pixels = self.pixels[slot]  # sorted, because u is
        starts = np.flatnonzero(np.diff(pixels, prepend=-1))
        counts = np.zeros(self.shape, dtype=np.int32)
        counts.reshape(-1)[pixels[starts]] = np.diff(np.append(starts, pixels.size))
        return counts
