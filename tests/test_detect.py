"""Tests of the peakfinder8-mode detector: peaks, parameters and peakfinder8's rules.

Synthetic frames and the backend fixture come from ``detect_helpers``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mpireduce.config import DetectConfig
from mpireduce.detect import make_detector, peakfinder8
from mpireduce.detect.peakfinder8 import label_sparse
from mpireduce.errors import ConfigError, InputError
from mpireduce.geometry import DetectorGeometry
from detect_helpers import (  # noqa: F401  (backend is a pytest fixture)
    CENTRE, SHAPE, backend, detector, make_geometry, match, precision, random_spots, synthetic_frame,
)


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
