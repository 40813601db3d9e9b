"""Synthetic frames and helpers shared by the detector tests.

Frames are synthetic: Poisson background with a radial profile plus pixel-integrated
Gaussian spots at known positions. ``backend`` runs each test body on every available
array backend (cupy cases skip cleanly without a GPU).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.special import erf

from mpireduce.backend import cupy_available, get_backend
from mpireduce.config import DetectConfig
from mpireduce.detect import PeakTable, make_detector
from mpireduce.geometry import DetectorGeometry

SHAPE = (512, 512)
CENTRE = (255.3, 256.6)  # (fs, ss)


@pytest.fixture(params=["numpy", "cupy"])
def backend(request):
    if request.param == "cupy" and not cupy_available():
        pytest.skip("cupy with a GPU is not available here")
    return get_backend(request.param)


# ---------------------------------------------------------------- synthetic data

def make_geometry(shape=SHAPE, mask=None) -> DetectorGeometry:
    mask = np.ones(shape, np.int8) if mask is None else mask
    return DetectorGeometry(shape, CENTRE[0], CENTRE[1], mask)


def background_level(geometry: DetectorGeometry) -> np.ndarray:
    """Expected background: a smooth radial fall-off, 60 to 260 counts."""
    return 60.0 + 200.0 * np.exp(-geometry.radius_px() / 150.0)


def spot_image(shape, fs, ss, total, width=1.0) -> np.ndarray:
    """Pixel-integrated Gaussian spots (centre of pixel (0, 0) at 0.0)."""
    image = np.zeros(shape)
    for x, y, amount in zip(fs, ss, total):
        x0, y0 = int(round(x)) - 6, int(round(y)) - 6
        ex = _pixel_fractions(np.arange(x0, x0 + 13), x, width)
        ey = _pixel_fractions(np.arange(y0, y0 + 13), y, width)
        image[y0:y0 + 13, x0:x0 + 13] += amount * np.outer(ey, ex)
    return image


def _pixel_fractions(pixels, centre, width):
    edges = (np.append(pixels, pixels[-1] + 1) - 0.5 - centre) / (width * math.sqrt(2.0))
    return np.diff(0.5 * (1.0 + erf(edges)))


def random_spots(rng, count, shape=SHAPE, separation=14.0, margin=10):
    """``count`` spot positions at least ``separation`` px apart, away from the edges."""
    fs, ss = [], []
    while len(fs) < count:
        x, y = rng.uniform(margin, shape[1] - margin), rng.uniform(margin, shape[0] - margin)
        if all(math.hypot(x - a, y - b) >= separation for a, b in zip(fs, ss)):
            fs.append(x)
            ss.append(y)
    return np.array(fs), np.array(ss)


def synthetic_frame(rng, geometry, fs=(), ss=(), total=(), dtype=np.int32):
    expected = background_level(geometry) + spot_image(geometry.shape, fs, ss, total)
    return rng.poisson(expected).astype(dtype)


def detector(backend, geometry=None, **overrides):
    config = dataclasses.replace(DetectConfig(backend=backend.name), **overrides)
    return make_detector(config, geometry or make_geometry(), backend)


def match(table: PeakTable, fs, ss, tolerance=2.0):
    """(indices of true spots found, distance to the nearest found peak of each true spot)."""
    if len(table) == 0:
        return np.zeros(0, int), np.full(len(fs), np.inf)
    dist = np.hypot(table.fs[None, :] - np.asarray(fs)[:, None], table.ss[None, :] - np.asarray(ss)[:, None])
    nearest = dist.min(axis=1)
    return np.flatnonzero(nearest <= tolerance), nearest


def precision(table: PeakTable, fs, ss, tolerance=2.0) -> float:
    """Fraction of found peaks within ``tolerance`` px of a true spot."""
    if len(table) == 0:
        return 1.0
    dist = np.hypot(table.fs[:, None] - np.asarray(fs)[None, :], table.ss[:, None] - np.asarray(ss)[None, :])
    return float(np.mean(dist.min(axis=1) <= tolerance))


# ---------------------------------------------------------------- detection quality

