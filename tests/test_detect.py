"""Tests of the peakfinder8-mode detector and its radial statistics.

Frames are synthetic: Poisson background with a radial profile plus pixel-integrated
Gaussian spots at known positions. Every test body runs on each available backend.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.special import erf

from mpireduce.backend import cupy_available, get_backend
from mpireduce.config import DetectConfig
from mpireduce.detect import PeakTable, make_detector, peakfinder8, radial, radial_counts
from mpireduce.detect.peakfinder8 import label_sparse
from mpireduce.detect.radial import RadialProfile, clipped_stats
from mpireduce.detect.radial_counts import CountProfile
from mpireduce.errors import ConfigError, InputError
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

def test_recall_precision_and_centroids(backend):
    rng = np.random.default_rng(1)
    geometry = make_geometry()
    fs, ss = random_spots(rng, 60)
    total = rng.uniform(1500, 20000, len(fs))
    table = detector(backend).find(synthetic_frame(rng, geometry, fs, ss, total))
    found, nearest = match(table, fs, ss)
    assert len(found) / len(fs) >= 0.95
    assert precision(table, fs, ss) >= 0.95
    assert np.all(nearest[found] <= 0.3)  # isolated spots: sub-pixel centroids
    assert np.all(table.snr >= 5.0) and np.all(table.intensity > 0)


def test_table_types_and_order(backend):
    rng = np.random.default_rng(2)
    geometry = make_geometry()
    fs, ss = random_spots(rng, 20)
    table = detector(backend).find(synthetic_frame(rng, geometry, fs, ss, rng.uniform(2000, 9000, 20)))
    assert isinstance(table.fs, np.ndarray) and table.fs.dtype == np.float32
    assert table.npix.dtype == np.int32 and table.snr.dtype == np.float32
    assert np.all(np.diff(table.intensity) <= 0)  # brightest first
    assert np.all((table.npix >= 2) & (table.npix <= 40))


def test_integrated_intensity_close_to_truth(backend):
    rng = np.random.default_rng(3)
    geometry = make_geometry()
    fs, ss = random_spots(rng, 30)
    total = np.full(len(fs), 8000.0)
    table = detector(backend, max_pixel_count=200).find(synthetic_frame(rng, geometry, fs, ss, total))
    # only the above-threshold core of a spot is integrated: most, not all, of it
    assert np.all((table.intensity > 0.6 * 8000) & (table.intensity < 1.1 * 8000))


def test_any_dtype_gives_the_same_peaks(backend):
    rng = np.random.default_rng(4)
    geometry = make_geometry()
    fs, ss = random_spots(rng, 15)
    frame = synthetic_frame(rng, geometry, fs, ss, rng.uniform(2000, 9000, 15))
    det = detector(backend)
    reference = det.find(frame)
    for dtype in (np.float32, np.float64, np.uint16):
        other = det.find(frame.astype(dtype))
        np.testing.assert_allclose(other.fs, reference.fs, atol=1e-4)


# ---------------------------------------------------------------- rejection rules

def test_noise_and_single_hot_pixels_give_no_peaks(backend):
    rng = np.random.default_rng(5)
    geometry = make_geometry()
    frame = synthetic_frame(rng, geometry)
    hot = rng.integers(0, frame.size, 40)
    frame.ravel()[hot] = 60000
    assert len(detector(backend, min_pixel_count=2).find(frame)) <= 1


def test_masked_pixels_never_produce_peaks(backend):
    rng = np.random.default_rng(6)
    mask = np.ones(SHAPE, np.int8)
    mask[100:200, 300:420] = 0  # a dead region, with bright spots under it
    mask[400:403, 50:53] = 0  # a masked 3x3 hot cluster
    geometry = make_geometry(mask=mask)
    fs, ss = np.array([320.0, 350.4, 390.7]), np.array([120.0, 150.2, 180.6])
    frame = synthetic_frame(rng, geometry, fs, ss, [9000, 9000, 9000])
    frame[400:403, 50:53] = 60000
    table = detector(backend, geometry).find(frame)
    rows, cols = np.rint(table.ss).astype(int), np.rint(table.fs).astype(int)
    assert np.all(mask[rows, cols] == 1)
    assert len(match(table, fs, ss)[0]) == 0
    assert len(match(table, [51.0], [401.0], tolerance=4.0)[0]) == 0


def test_all_zero_and_flat_frames_are_empty(backend):
    det = detector(backend)
    for frame in (np.zeros(SHAPE, np.int32), np.full(SHAPE, 7.0, np.float32)):
        table = det.find(frame)
        assert len(table) == 0 and table.fs.dtype == np.float32


def test_frame_of_wrong_shape_is_an_input_error(backend):
    with pytest.raises(InputError, match="shape"):
        detector(backend).find(np.zeros((10, 10)))


def test_factory_builds_the_configured_detector(backend):
    det = detector(backend)
    assert det.name == "peakfinder8" and det.backend is backend
    with pytest.raises(ConfigError, match="detect.mode"):
        make_detector(DetectConfig(mode="fast9"), make_geometry(), backend)


def _small_detector(backend, shape=(64, 64), centre=(31.5, 32.0)):
    geometry = DetectorGeometry(shape, centre[0], centre[1], np.ones(shape, np.int8))
    return detector(backend, geometry, adc_threshold=2.0, min_snr=5.0, min_pixel_count=2,
                    max_pixel_count=40, local_bg_radius=3)


def test_local_background_follows_peakfinder8(backend):
    """Ring window (offsets -2R..2R-1 within 2R), pixels equal to the threshold are not
    background, and snr = intensity / bg_sigma."""
    frame = np.zeros((64, 64), np.int32)
    frame[20, 31] = frame[20, 32] = 3  # one radius bin: the window centres on (20, 32)
    frame[21, 31] = frame[19, 33] = 2  # equal to the threshold (adc 2): neither seed nor background
    for row, col in ((20, 36), (24, 32), (14, 32), (20, 26)):  # inside the window
        frame[row, col] = 1
    frame[26, 32] = frame[20, 38] = 1  # +2R: outside the window
    table = _small_detector(backend).find(frame)
    assert len(table) == 1
    n = 111 - 4  # window pixels less the peak and the two pixels at the threshold
    mean = 4.0 / n
    sigma = math.sqrt(mean - mean * mean)
    intensity = 6.0 - 2.0 * mean
    assert table.npix[0] == 2 and table.fs[0] == 31.5 and table.ss[0] == 20.0
    np.testing.assert_allclose(table.intensity[0], intensity, rtol=1e-6)
    np.testing.assert_allclose(table.max_value[0], 3.0 - mean, rtol=1e-6)
    np.testing.assert_allclose(table.snr[0], intensity / sigma, rtol=1e-6)


@pytest.mark.parametrize("bright, kept", [(4, True), (5, True), (6, False)])
def test_peak_must_reach_the_local_background_max(backend, bright, kept):
    """A background pixel (below its own, higher, threshold) as bright as the peak's
    brightest pixel does not reject it; a brighter one does."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:64, :64]
    ring = np.rint(np.hypot(yy - 32.0, xx - 32.0)) == 18  # one bright radius bin
    frame = np.where(ring, rng.poisson(10, (64, 64)), np.minimum(rng.poisson(0.5, (64, 64)), 1))
    frame[ring & (np.abs(yy - 32) <= 7) & (np.abs(xx - 47) <= 7)] = 0
    frame[32, 46] = frame[32, 47] = 5
    frame[32, 50] = bright  # in the bright bin, far below its threshold
    table = _small_detector(backend, centre=(32.0, 32.0)).find(frame.astype(np.int32))
    assert (len(table) == 1 and table.fs[0] == 46.5) if kept else len(table) == 0


def test_components_on_the_frame_border_need_an_inner_pixel(backend):
    frame = np.zeros((64, 64), np.int32)
    frame[::5, ::3] = 1
    frame[10:12, 0] = 9  # only border pixels: never seeded
    frame[40, 0] = frame[40, 1] = 9  # one inner pixel: found, border pixel included
    table = _small_detector(backend).find(frame)
    assert len(table) == 1 and table.npix[0] == 2 and abs(table.ss[0] - 40.0) < 1e-6


# ---------------------------------------------------------------- parameter semantics

def test_max_num_peaks_keeps_the_brightest(backend):
    rng = np.random.default_rng(7)
    geometry = make_geometry()
    fs, ss = random_spots(rng, 30)
    frame = synthetic_frame(rng, geometry, fs, ss, rng.uniform(2000, 20000, 30))
    everything = detector(backend).find(frame)
    top = detector(backend, max_num_peaks=5).find(frame)
    assert len(top) == 5
    np.testing.assert_allclose(top.intensity, everything.intensity[:5])


def test_resolution_limits_are_respected(backend):
    rng = np.random.default_rng(8)
    geometry = make_geometry()
    fs, ss = random_spots(rng, 60)
    frame = synthetic_frame(rng, geometry, fs, ss, np.full(60, 9000.0))
    table = detector(backend, min_res=80.0, max_res=200.0).find(frame)
    radius = np.hypot(table.fs - CENTRE[0], table.ss - CENTRE[1])
    assert len(table) > 0
    assert np.all((radius >= 80.0 - 2.0) & (radius <= 200.0 + 2.0))
    true_radius = np.hypot(fs - CENTRE[0], ss - CENTRE[1])
    inside = (true_radius > 85.0) & (true_radius < 195.0)
    found, _ = match(table, fs[inside], ss[inside])
    assert len(found) >= 0.95 * inside.sum()


def test_higher_min_snr_finds_fewer_peaks(backend):
    rng = np.random.default_rng(9)
    geometry = make_geometry()
    fs, ss = random_spots(rng, 80)
    frame = synthetic_frame(rng, geometry, fs, ss, np.geomspace(150, 20000, 80))
    counts = [len(detector(backend, min_snr=snr).find(frame)) for snr in (4.0, 8.0, 16.0, 32.0)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_pixel_count_limits(backend):
    rng = np.random.default_rng(10)
    geometry = make_geometry()
    fs, ss = random_spots(rng, 20)
    frame = synthetic_frame(rng, geometry, fs, ss, np.full(20, 15000.0))
    table = detector(backend, min_pixel_count=1, max_pixel_count=100).find(frame)
    assert len(table) == 20
    small = detector(backend, max_pixel_count=int(np.median(table.npix))).find(frame)
    assert 0 < len(small) < 20 and np.all(small.npix <= np.median(table.npix))


def test_adc_threshold_suppresses_weak_spots(backend):
    rng = np.random.default_rng(11)
    geometry = make_geometry()
    fs, ss = random_spots(rng, 20)
    frame = synthetic_frame(rng, geometry, fs, ss, np.full(20, 3000.0))
    assert len(detector(backend).find(frame)) >= 19
    assert len(detector(backend, adc_threshold=5000.0).find(frame)) == 0


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
    rng = np.random.default_rng(15)
    for trial in range(12):
        shape = tuple(int(n) for n in rng.integers(40, 160, 2))
        mask = (rng.random(shape) > (0.0, 0.02, 0.3)[trial % 3]).astype(np.int8)
        centre = rng.uniform(-30, shape[1] + 30), rng.uniform(-30, shape[0] + 30)
        geometry = DetectorGeometry(shape, *centre, mask)
        frame = _random_frame(rng, geometry, trial % 4)
        nsigma, iterations = float(rng.choice([2.0, 3.5, 5.0, 8.0])), int(rng.integers(1, 7))
        _, flat, result, mean, sigma = _profile_and_reference(backend, frame, geometry, nsigma, iterations)
        _assert_same_clipping(backend, flat, result, mean, sigma, nsigma, geometry)


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
    rng = np.random.default_rng(19)
    for trial in range(16):
        shape = tuple(int(n) for n in rng.integers(40, 160, 2))
        mask = (rng.random(shape) > (0.0, 0.02, 0.3)[trial % 3]).astype(np.int8)
        centre = rng.uniform(-30, shape[1] + 30), rng.uniform(-30, shape[0] + 30)
        geometry = DetectorGeometry(shape, *centre, mask)
        frame = _integer_frame(rng, geometry, trial % 4)
        nsigma, iterations = float(rng.choice([2.0, 3.5, 5.0])), int(rng.integers(1, 7))
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

def test_sparse_labelling_matches_ndi_label(backend):
    xp, ndi = backend.xp, backend.ndi
    rng = np.random.default_rng(17)
    for density in (0.0, 0.01, 0.1, 0.4):
        image = rng.random((60, 47)) < density
        image[5, -1] = image[6, 0] = True  # row ends must not join the next row
        pixels = xp.asarray(np.flatnonzero(image))
        label, count = label_sparse(xp, pixels, image.shape[1])
        labels, expected_count = ndi.label(xp.asarray(image), structure=xp.ones((3, 3), bool))
        assert count == int(expected_count)
        np.testing.assert_array_equal(backend.to_host(label), backend.to_host(labels.ravel()[pixels] - 1))


def test_dense_and_sparse_labelling_give_the_same_peaks(backend, monkeypatch):
    rng = np.random.default_rng(18)
    geometry = make_geometry()
    fs, ss = random_spots(rng, 40)
    frame = synthetic_frame(rng, geometry, fs, ss, rng.uniform(1000, 20000, 40))
    sparse = detector(backend).find(frame)
    monkeypatch.setattr(peakfinder8, "DENSE_FRACTION", 0.0)
    dense = detector(backend).find(frame)
    for name in ("fs", "ss", "intensity", "npix", "snr"):
        np.testing.assert_array_equal(getattr(dense, name), getattr(sparse, name))


# ---------------------------------------------------------------- the team's simulator

def test_simulated_sfx_frames(backend):
    simulate = pytest.importorskip("mpireduce.simulate")
    if not hasattr(simulate, "simulate_frame"):
        pytest.skip("mpireduce.simulate.simulate_frame is not available")
    config = simulate.SimulationConfig(n_frames=4, hit_fraction=1.0, weak_fraction=0.0,
                                       multi_fraction=0.0, detector="512x512", seed=3)
    layout = simulate.make_detector_layout(config.validate())
    det = detector(backend, layout.geometry(), adc_threshold=2.0)
    found = listed = visible = recalled = 0
    for index in range(4):
        frame, _, spots = simulate.simulate_frame(config, index, layout)
        table = det.find(frame)
        vis = spots["visible"]
        recalled += len(match(table, spots["fs"][vis], spots["ss"][vis])[0])
        visible += int(vis.sum())
        found += len(table)
        listed += round(precision(table, spots["fs"], spots["ss"]) * len(table))
    assert recalled >= 0.8 * visible
    assert listed >= 0.9 * found
