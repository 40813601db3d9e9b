"""The SPI classifier's view of a frame: a centred, binned, two-channel log image.

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

LOG_SCALE = 4.0
RADIAL_CLIP = 5.0
_EPS = 1e-6


@dataclass(frozen=True)
class SpiTransform:
    """How an SPI frame becomes a ``(2, size, size)`` float32 array."""

    size: int = 64  #: output side in cells
    crop: int = 128  #: side of the centred square of detector pixels that is kept

    def __post_init__(self) -> None:
        if self.size < 8 or self.crop < self.size or self.crop % self.size:
            raise ValueError(f"SPI transform needs size >= 8 and crop a multiple of size, got {self.size}, {self.crop}")

    @property
    def output_shape(self) -> Tuple[int, int, int]:
        return (3, self.size, self.size)

    def to_dict(self) -> dict:
        return {"name": "SpiTransform", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "SpiTransform":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        data = {k: v for k, v in data.items() if k != "name"}
        unknown = set(data) - {"size", "crop"}
        if unknown:
            raise ValueError(f"unknown SPI transform keys {sorted(unknown)}")
        return cls(**{k: int(v) for k, v in data.items()})

    def apply(self, frame: np.ndarray, mask: Optional[np.ndarray], centre: Tuple[float, float]) -> np.ndarray:
        """Transform one frame; ``centre`` is the beam centre (ss, fs) in pixels."""
        if frame.ndim != 2:
            raise ValueError(f"expected a 2-D (ss, fs) frame, got shape {frame.shape}")
        good = np.ones(frame.shape, np.float32) if mask is None else (mask != 0).astype(np.float32)
        counts = np.nan_to_num(frame.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0) * good
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
