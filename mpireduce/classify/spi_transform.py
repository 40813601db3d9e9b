"""The SPI classifier's view of a frame: three channels on a polar (or square) grid.

``layout="polar"`` (the default of new models) resamples everything on a ``size x size``
grid of (radius, angle), angles over half a turn (the small-angle pattern is centrosymmetric,
so both halves are averaged, which also fills most of the detector gap). A rotation of the
detector is then a circular shift along the angle axis, which the embedding net's circular
padding and global pooling ignore, so no rotation has to be learned from a few labels:

1. masked pixels (beamstop, gap) of the centred ``crop x crop`` square take the mean of their
   1-pixel ring (rings without good pixels, inside the beamstop, the nearest good ring's);
2. channel ``log``: ``log1p(photons)`` at radii ``(i + 0.5) crop / (2 size)``, ``/ LOG_SCALE``;
3. channel ``contrast``: channel ``log`` minus each ring's mean over angle, over its std:
   the angular speckle, whose angular width (~ 1 / extent) separates clusters from singles;
4. channel ``patterson``: ``log |IFFT(I)|`` relative to its origin (the autocorrelation of the
   projected object) at lags ``i crop / (2 size)`` pixels: along each ray a single convex
   particle decays monotonically, a cluster shows side lobes at its separation vectors.

``layout="square"`` (models of format 1 without a layout key) is the earlier binned image:

Steps (all recorded in the model file through :meth:`SpiTransform.to_dict`):

1. crop a ``crop x crop`` square centred on the beam (zero-padded where it leaves the frame);
2. sum ``crop / size`` square blocks of good pixels into one cell, and rescale each cell by
   the fraction of its pixels that are good (so the beamstop and gaps do not dim the cells
   they touch; cells with no good pixel are 0);
3. channel ``log``: ``log1p(photons per pixel) / LOG_SCALE``, absolute, so a bright
   pattern and an empty frame differ;
4. channel ``radial``: the ``log`` image with each ring's mean removed and divided by the
   ring's standard deviation (clipped to +-``RADIAL_CLIP``): the speckle contrast, free of
   the strong radial fall-off that depends mostly on particle size and fluence;
5. channel ``patterson``: the modulus of the inverse FFT of the full-resolution intensity
   (the autocorrelation of the projected object: one compact blob for a single particle,
   side lobes at the separation vectors of a cluster, a streak for a rod), relative to its
   origin, on a log scale and block-averaged to ``size``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np
from scipy import ndimage

LOG_SCALE = 4.0
RADIAL_CLIP = 5.0
_EPS = 1e-6


@dataclass(frozen=True)
class SpiTransform:
    """How an SPI frame becomes a ``(2, size, size)`` float32 array."""

    size: int = 64  #: output side in cells (polar: radii = angles = size)
    crop: int = 128  #: side of the centred square of detector pixels that is kept
    layout: str = "polar"  #: polar | square

    def __post_init__(self) -> None:
        if self.layout not in ("polar", "square"):
            raise ValueError(f"SPI transform layout must be polar or square, got {self.layout!r}")
        if self.size < 8 or self.crop < self.size or (self.layout == "square" and self.crop % self.size):
            raise ValueError(f"SPI transform needs size >= 8 and crop a multiple of size, got {self.size}, {self.crop}")

    @property
    def output_shape(self) -> Tuple[int, int, int]:
        """(channels, size, size)."""
        return (3, self.size, self.size)

    def to_dict(self) -> dict:
        return {"name": "SpiTransform", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "SpiTransform":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        data = {k: v for k, v in data.items() if k != "name"}
        unknown = set(data) - {"size", "crop", "layout"}
        if unknown:
            raise ValueError(f"unknown SPI transform keys {sorted(unknown)}")
        layout = str(data.pop("layout", "square"))  # files written before the polar layout
        return cls(**{k: int(v) for k, v in data.items()}, layout=layout)

    def apply(self, frame: np.ndarray, mask: Optional[np.ndarray], centre: Tuple[float, float]) -> np.ndarray:
        """Transform one frame; ``centre`` is the beam centre (ss, fs) in pixels."""
        if frame.ndim != 2:
            raise ValueError(f"expected a 2-D (ss, fs) frame, got shape {frame.shape}")
        good = np.ones(frame.shape, np.float32) if mask is None else (mask != 0).astype(np.float32)
        counts = np.nan_to_num(frame.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0) * good
        if self.layout == "polar":
            return self._polar(counts, good, centre)
        block = self.crop // self.size
        cropped = centred_crop(counts, centre, self.crop)
        summed = block_sum(cropped, block)
        coverage = block_sum(centred_crop(good, centre, self.crop), block)
        per_pixel = np.where(coverage > 0, summed / np.maximum(coverage, 1.0), 0.0)
        log_image = np.log1p(per_pixel).astype(np.float32)
        out = np.empty(self.output_shape, np.float32)
        out[0] = log_image / LOG_SCALE
        out[1] = radial_normalise(log_image, coverage > 0)
        out[2] = block_sum(patterson(cropped), block) / np.float32(block * block)
        return out


    def _polar(self, counts: np.ndarray, good: np.ndarray, centre: Tuple[float, float]) -> np.ndarray:
        cropped = centred_crop(counts, centre, self.crop)
        valid = centred_crop(good, centre, self.crop) > 0
        offset = tuple(c - np.floor(c + 0.5) for c in centre)  # true centre relative to the crop's centre pixel
        rings, ring_coords, lag_coords = polar_geometry(self.size, self.crop, offset)
        filled = fill_rings(cropped, valid, rings)
        out = np.empty(self.output_shape, np.float32)
        log_polar = ndimage.map_coordinates(np.log1p(filled), ring_coords, order=1).reshape(2, self.size, self.size)
        log_polar = log_polar.mean(axis=0)  # Friedel mates, theta and theta + pi
        out[0] = log_polar / LOG_SCALE
        mean = log_polar.mean(axis=1, keepdims=True)
        std = log_polar.std(axis=1, keepdims=True) + 0.05
        out[1] = np.clip((log_polar - mean) / std, -RADIAL_CLIP, RADIAL_CLIP)
        out[2] = ndimage.map_coordinates(patterson(filled), lag_coords, order=1).reshape(self.size, self.size)
        return out


@lru_cache(maxsize=8)
def polar_geometry(size: int, crop: int, offset: Tuple[float, float]):
    """Ring index of each crop pixel, and the sampling coordinates of the polar grids.

    Returns ``(rings, ring_coords, lag_coords)``: ``ring_coords`` (2, 2 size^2) samples radius
    ``(i + 0.5) crop / (2 size)`` at angles ``j pi / size`` and ``+ pi``; ``lag_coords`` the
    autocorrelation (origin at pixel ``crop // 2``) at lags ``i crop / (2 size)``.
    """
    centre = np.array([crop // 2 + offset[0], crop // 2 + offset[1]])
    y, x = np.mgrid[0:crop, 0:crop]
    rings = np.floor(np.hypot(y - centre[0], x - centre[1])).astype(np.int64)
    step = crop / (2.0 * size)
    angles = np.arange(size) * np.pi / size
    radii = (np.arange(size) + 0.5) * step
    both = np.concatenate([angles, angles + np.pi])
    r, a = np.meshgrid(radii, both, indexing="ij")
    ring_coords = np.stack([centre[0] + r * np.sin(a), centre[1] + r * np.cos(a)])
    ring_coords = ring_coords.reshape(2, size, 2, size).transpose(0, 2, 1, 3).reshape(2, -1)
    lags, a = np.meshgrid(np.arange(size) * step, angles, indexing="ij")
    lag_coords = np.stack([crop // 2 + lags * np.sin(a), crop // 2 + lags * np.cos(a)]).reshape(2, -1)
    return rings, ring_coords, lag_coords


def fill_rings(image: np.ndarray, valid: np.ndarray, rings: np.ndarray) -> np.ndarray:
    """``image`` with each invalid pixel set to its ring's mean over valid pixels.

    Rings without a valid pixel (inside the beamstop) take the nearest valid ring's mean.
    """
    n_rings = int(rings.max()) + 1
    count = np.bincount(rings.ravel(), valid.ravel(), n_rings)
    total = np.bincount(rings.ravel(), (image * valid).ravel(), n_rings)
    known = np.flatnonzero(count > 0)
    if not len(known):
        return np.zeros_like(image, dtype=np.float32)
    mean = np.interp(np.arange(n_rings), known, total[known] / count[known])
    return np.where(valid, image, mean[rings]).astype(np.float32)


def centred_crop(image: np.ndarray, centre: Tuple[float, float], side: int) -> np.ndarray:
    """The ``side x side`` square whose centre is the pixel nearest ``centre``, zero-padded."""
    out = np.zeros((side, side), image.dtype)
    starts = [int(np.floor(c + 0.5)) - side // 2 for c in centre]
    src, dst = [], []
    for start, length in zip(starts, image.shape):
        lo, hi = max(start, 0), min(start + side, length)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - start, max(hi, lo) - start))
    out[dst[0], dst[1]] = image[src[0], src[1]]
    return out


def block_sum(image: np.ndarray, block: int) -> np.ndarray:
    """Sum of each ``block x block`` tile (the side must be a multiple of ``block``)."""
    if block == 1:
        return image
    n = image.shape[0] // block
    return image.reshape(n, block, n, block).sum(axis=(1, 3))


@lru_cache(maxsize=4)
def ring_index(size: int) -> Tuple[np.ndarray, int]:
    """Flat ring number (distance from the grid centre, rounded) of every cell, and the ring count."""
    y, x = np.mgrid[0:size, 0:size] - (size / 2 - 0.5)
    rings = np.floor(np.hypot(y, x)).astype(np.int64).ravel()
    return rings, int(rings.max()) + 1


def patterson(intensity: np.ndarray, floor: float = 1e-4) -> np.ndarray:
    """``log10(|IFFT(I)| / |IFFT(I)|(0))`` mapped from ``[log10 floor, 0]`` to ``[0, 1]``, origin centred."""
    auto = np.abs(np.fft.fftshift(np.fft.ifft2(intensity.astype(np.float32))))
    origin = auto[intensity.shape[0] // 2, intensity.shape[1] // 2]
    scaled = np.log10(np.maximum(auto / max(float(origin), _EPS), floor)) / -np.log10(floor) + 1.0
    return scaled.astype(np.float32)


def radial_normalise(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(image - ring mean) / ring std`` over the valid cells of each ring; 0 where not valid."""
    rings, n_rings = ring_index(image.shape[0])
    weights = valid.ravel().astype(np.float64)
    values = image.ravel().astype(np.float64)
    count = np.bincount(rings, weights, n_rings)
    mean = np.bincount(rings, weights * values, n_rings) / np.maximum(count, 1)
    var = np.bincount(rings, weights * values**2, n_rings) / np.maximum(count, 1) - mean**2
    std = np.sqrt(np.maximum(var, 0.0)) + 0.05
    normalised = ((values - mean[rings]) / std[rings]) * weights
    return np.clip(normalised, -RADIAL_CLIP, RADIAL_CLIP).reshape(image.shape).astype(np.float32)
