"""Tests of the radial statistics behind peakfinder8: banded, histogram and plain clipping agree.

Synthetic frames and the backend fixture come from ``detect_helpers``.
"""

from __future__ import annotations


import numpy as np
import pytest

from mpireduce.backend import get_backend
from mpireduce.detect import radial, radial_counts
from mpireduce.detect.radial import RadialProfile, clipped_stats
from mpireduce.detect.radial_counts import CountProfile
from mpireduce.geometry import DetectorGeometry
from detect_helpers import (  # noqa: F401  (backend is a pytest fixture)
    SHAPE, backend, detector, make_geometry, random_spots, synthetic_frame,
)


# ---------------------------------------------------------------- radial statistics

def _profile_and_reference(backend, frame, geometry, nsigma=5.0, iterations=5):
    xp = backend.xp
    profile = RadialProfile(geometry, backend, nsigma=nsigma, adc_threshold=0.0, iterations=iterations)
    flat = xp.asarray(frame, dtype=xp.float32).ravel()
    result = profile.analyse(flat)
    good = xp.asarray(geometry.mask.ravel() == 1)
    mean, sigma = clipped_stats(xp, flat[good], profile.bins[good], profile.nbins, iterations, nsigma)
    return profile, flat, result, mean, sigma


@pytest.mark.parametrize("wide_band", [False, True])
def test_banded_clipping_equals_plain_clipping(backend, monkeypatch, wide_band):
    rng = np.random.default_rng(12)
    mask = np.ones(SHAPE, np.int8)
    mask[:, 250:254] = 0
    geometry = make_geometry(mask=mask)
    fs, ss = random_spots(rng, 40)
    frame = synthetic_frame(rng, geometry, fs, ss, rng.uniform(2000, 20000, 40))
    repaired = []
    if wide_band:  # a band wider than the clipping bounds must be detected and repaired
        estimate, redo = RadialProfile._estimate_band, RadialProfile._all_pixels

        def too_wide(self, flat):
            centre, width = estimate(self, flat)
            return centre, width + 1000.0

        def spy(self, flat, bins, centre):
            repaired.append(int(bins.sum()))
            return redo(self, flat, bins, centre)

        monkeypatch.setattr(RadialProfile, "_estimate_band", too_wide)
        monkeypatch.setattr(RadialProfile, "_all_pixels", spy)
    _, flat, result, mean, sigma = _profile_and_reference(backend, frame, geometry)
    assert bool(repaired) == wide_band and all(n > 100 for n in repaired)
    _assert_same_clipping(backend, flat, result, mean, sigma, 5.0, geometry)


def test_plain_clipping_drops_outliers(backend):
    xp = backend.xp
    values = xp.asarray(np.r_[np.random.default_rng(13).normal(100, 10, 5000), [1e5] * 20].astype(np.float32))
    bins = xp.zeros(values.size, dtype=xp.int64)
    mean, sigma = clipped_stats(xp, values, bins, 1, 5, 5.0)
    assert abs(float(mean[0]) - 100) < 1 and abs(float(sigma[0]) - 10) < 1
    mean1, _ = clipped_stats(xp, values, bins, 1, 1, 5.0)  # one round: no clipping
    assert float(mean1[0]) > 450


def test_low_count_frames_still_match_plain_clipping(backend):
    rng = np.random.default_rng(14)
    geometry = make_geometry()
    frame = rng.poisson(0.05 + 1.5 * np.exp(-geometry.radius_px() / 100.0)).astype(np.int32)
    _, flat, result, mean, sigma = _profile_and_reference(backend, frame, geometry)
    _assert_same_clipping(backend, flat, result, mean, sigma, 5.0, geometry)


def test_random_frames_match_plain_clipping(backend, monkeypatch):
    """Many strips, masks, beam centres off the frame, negative and discrete values."""
    monkeypatch.setattr(radial, "STRIP_PIXELS", 3000)
    cases = _random_cases(np.random.default_rng(15), 12, _random_frame, [2.0, 3.5, 5.0, 8.0])
    for _, geometry, frame, nsigma, iterations in cases:
        _, flat, result, mean, sigma = _profile_and_reference(backend, frame, geometry, nsigma, iterations)
        _assert_same_clipping(backend, flat, result, mean, sigma, nsigma, geometry)


def _random_cases(rng, trials: int, make_frame, nsigmas: list):
    """``trials`` random (trial, geometry, frame, nsigma, iterations): shapes 40-160 px, masks with
    0-30% bad pixels, beam centres up to 30 px off the frame; ``make_frame(rng, geometry, trial % 4)``."""
    for trial in range(trials):
        shape = tuple(int(n) for n in rng.integers(40, 160, 2))
        mask = (rng.random(shape) > (0.0, 0.02, 0.3)[trial % 3]).astype(np.int8)
        centre = rng.uniform(-30, shape[1] + 30), rng.uniform(-30, shape[0] + 30)
        geometry = DetectorGeometry(shape, *centre, mask)
        frame = make_frame(rng, geometry, trial % 4)
        yield trial, geometry, frame, float(rng.choice(nsigmas)), int(rng.integers(1, 7))


def _random_frame(rng, geometry, kind):
    radius = geometry.radius_px()
    if kind == 0:  # photon counting, mostly empty pixels
        return rng.poisson(0.05 + 2.0 * np.exp(-radius / 40.0)).astype(np.int32)
    if kind == 1:  # pedestal-subtracted, negative values
        return rng.normal(0.0, 5.0, geometry.shape).astype(np.float32)
    if kind == 2:  # rare huge outliers
        spikes = (rng.random(geometry.shape) < 0.01) * rng.uniform(0, 1e5, geometry.shape)
        return (rng.poisson(100, geometry.shape) + spikes).astype(np.float32)
    frame = np.full(geometry.shape, 3.0, np.float32)  # flat, a few bright pixels
    frame[rng.random(geometry.shape) < 0.002] = 50.0
    return frame


def _assert_same_clipping(backend, flat, result, mean, sigma, nsigma, geometry):
    """``result`` of RadialProfile equals plain clipping (mean, sigma) and its outliers."""
    host = backend.to_host
    np.testing.assert_allclose(host(result.mean), host(mean), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(host(result.sigma), host(sigma), rtol=1e-4, atol=1e-5)
    threshold = np.maximum(host(mean) + nsigma * host(sigma), 0.0)
    bins = np.rint(geometry.radius_px()).astype(int).ravel()
    outliers = np.flatnonzero((host(flat) > threshold[bins]) & (geometry.mask.ravel() != 0))
    np.testing.assert_array_equal(host(result.outliers), outliers)


def _integer_frame(rng, geometry, kind):
    """Integer frames for the histogram path: each kind takes a different branch."""
    radius = geometry.radius_px()
    if kind == 0:  # photon counting: mostly zeros (sparse counting), a few bright pixels
        frame = rng.poisson(0.05 + 2.0 * np.exp(-radius / 40.0))
        frame[rng.random(geometry.shape) < 0.0005] = 5000
        return frame.astype(np.uint16)
    if kind == 1:  # pedestal-subtracted ADU: negative values, spikes far above the window
        frame = rng.normal(0.0, 6.0, geometry.shape).round()
        frame[rng.random(geometry.shape) < 0.0005] = rng.integers(100, 10 ** 6, 1)
        return frame.astype(np.int32)
    if kind == 2:  # dense counts on an offset, with dead pixels below the window
        frame = rng.poisson(300 + 50 * np.exp(-radius / 60.0)) - 280
        frame[rng.random(geometry.shape) < 0.0005] = -1000
        return frame.astype(np.int32)
    return rng.integers(0, 5000, geometry.shape).astype(np.int64)  # too spread: float path


@pytest.mark.parametrize("adc_threshold", [0.0, 3.0])
def test_integer_histogram_path_equals_plain_clipping(backend, monkeypatch, adc_threshold):
    """Counting per value gives plain clipping's statistics bit for bit, and its outliers."""
    monkeypatch.setattr(radial_counts, "CHUNK_PIXELS", 2000)
    monkeypatch.setattr(radial_counts, "SAMPLE_PIXELS", 300)
    xp, host = backend.xp, backend.to_host
    for trial, geometry, frame, nsigma, iterations in _random_cases(np.random.default_rng(19), 16, _integer_frame,
                                                                    [2.0, 3.5, 5.0]):
        mask = geometry.mask
        profile = RadialProfile(geometry, backend, nsigma=nsigma, adc_threshold=adc_threshold,
                                iterations=iterations)
        flat = xp.asarray(frame).ravel()
        result = CountProfile(profile, backend.name).analyse(flat)
        good = xp.asarray(mask.ravel() == 1)
        values = flat.astype(xp.float32)
        mean, sigma = clipped_stats(xp, values[good], profile.bins[good], profile.nbins, iterations, nsigma)
        if trial % 4 == 3:  # the float path's banded sums may differ in the last bit
            np.testing.assert_allclose(host(result.sigma), host(sigma), rtol=1e-6)
        else:
            np.testing.assert_array_equal(host(result.mean), host(mean))
            np.testing.assert_array_equal(host(result.sigma), host(sigma))
        threshold = np.maximum(host(mean) + nsigma * host(sigma), np.float32(adc_threshold))
        outliers = np.flatnonzero((host(values) > threshold[np.minimum(host(profile.bins), profile.nbins - 1)])
                                  & (mask.ravel() != 0))
        np.testing.assert_array_equal(host(result.outliers), outliers)


def test_integer_and_float_frames_give_the_same_peaks(backend):
    rng = np.random.default_rng(20)
    geometry = make_geometry()
    fs, ss = random_spots(rng, 30)
    frame = synthetic_frame(rng, geometry, fs, ss, rng.uniform(1000, 20000, 30))
    for overrides in ({}, {"adc_threshold": 2.0, "radial_iterations": 3}):
        det = detector(backend, **overrides)
        counted, plain = det.find(frame), det.find(frame.astype(np.float32))
        assert len(counted) >= 25
        for name in ("fs", "ss", "intensity", "npix", "max_value", "snr"):
            np.testing.assert_array_equal(getattr(counted, name), getattr(plain, name))


def test_gpu_code_paths_on_the_cpu(monkeypatch):
    """Expansion by gather (cupy has no array ``repeat``) and sums without ``reduceat``."""
    backend = get_backend("numpy")
    rng = np.random.default_rng(16)
    geometry = make_geometry()
    fs, ss = random_spots(rng, 20)
    frame = synthetic_frame(rng, geometry, fs, ss, rng.uniform(2000, 9000, 20))
    profile, flat, expected, _, _ = _profile_and_reference(backend, frame, geometry)
    profile.slot_segment = np.repeat(np.arange(profile.segment_sizes.size), profile.segment_sizes)
    profile.xp = _NumpyWithoutReduceat()
    result = profile.analyse(flat)
    np.testing.assert_array_equal(result.outliers, expected.outliers)
    np.testing.assert_allclose(result.sigma, expected.sigma, rtol=1e-5)


class _NumpyWithoutReduceat:
    """numpy whose ``add``/``maximum`` are plain functions, like an older cupy."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def add(*args, **kwargs):
        return np.add(*args, **kwargs)

    @staticmethod
    def maximum(*args, **kwargs):
        return np.maximum(*args, **kwargs)


# ---------------------------------------------------------------- connected components
