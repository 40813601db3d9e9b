"""Tests of the parameter-free ``auto`` detector: one default config on every data set.

Frames come from the team's simulator (photon counts, panel gaps, beamstop, hot pixels)
at several background scales and geometries, from pure noise, and from a real frame.
Every test body runs on each available backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpireduce.backend import cupy_available, get_backend
from mpireduce.config import DetectConfig
from mpireduce.detect import make_detector
from mpireduce.geometry import DetectorGeometry
from mpireduce.scoring import PeakScore, score_peaks
from mpireduce.simulate import SimulationConfig, make_detector_layout, simulate_frame

REAL = Path("/work/shared/data/real")


@pytest.fixture(params=["numpy", "cupy"])
def backend(request):
    if request.param == "cupy" and not cupy_available():
        pytest.skip("cupy with a GPU is not available here")
    return get_backend(request.param)


def auto_detector(backend, geometry):
    return make_detector(DetectConfig(mode="auto", backend=backend.name), geometry, backend)


def score_run(backend, frames: int, hit_fraction: float, **settings):
    """(PeakScore over crystal frames, peaks found on misses) of a simulated run."""
    config = SimulationConfig(hit_fraction=hit_fraction, weak_fraction=0.0, **settings).validate()
    layout = make_detector_layout(config)
    detector = auto_detector(backend, layout.geometry())
    total, miss_peaks = PeakScore(), 0
    for index in range(frames):
        frame, kind, spots = simulate_frame(config, index, layout)
        table = detector.find(frame)
        if kind == 0:
            miss_peaks += len(table)
        else:
            total += score_peaks(table.fs, table.ss, spots["fs"], spots["ss"], spots["visible"])
    return total, miss_peaks


@pytest.mark.parametrize("background", [0.3, 3.0])
def test_hits_at_several_background_scales(backend, background):
    score, _ = score_run(backend, 2, 1.0, detector="1M", background=background, seed=31)
    assert score.visible > 50
    assert score.precision >= 0.9 and score.recall >= 0.9


def test_4m_geometry_with_other_physics(backend):
    score, _ = score_run(backend, 1, 1.0, detector="4M", background=2.0, distance_m=0.15,
                         wavelength_A=1.3, seed=32)
    assert score.visible > 20
    assert score.precision >= 0.9 and score.recall >= 0.9


def test_binned_256_frames(backend):
    score, _ = score_run(backend, 4, 1.0, detector="256x256", seed=33)
    assert score.precision >= 0.9 and score.recall >= 0.7  # spots crowd at 300 um pixels


def test_misses_give_no_peaks(backend):
    for background in (0.3, 3.0):
        _, miss_peaks = score_run(backend, 3, 0.0, detector="1M", background=background, seed=34)
        assert miss_peaks <= 1


@pytest.mark.parametrize("level", [0.02, 0.5, 5.0, 200.0])
def test_pure_noise_gives_no_peaks(backend, level):
    rng = np.random.default_rng(35)
    shape = (512, 512)
    geometry = DetectorGeometry(shape, 250.3, 260.7, np.ones(shape, np.int8))
    falloff = 0.2 + np.exp(-geometry.radius_px() / 150.0)
    detector = auto_detector(backend, geometry)
    found = sum(len(detector.find(rng.poisson(level * falloff).astype(np.int32))) for _ in range(4))
    assert found <= 1  # four 0.26 Mpx frames: about 1 Mpx of noise


def test_gaussian_noise_float_frames(backend):
    rng = np.random.default_rng(36)
    shape = (512, 512)
    geometry = DetectorGeometry(shape, 256.0, 256.0, np.ones(shape, np.int8))
    detector = auto_detector(backend, geometry)
    assert sum(len(detector.find(rng.normal(10.0, 3.0, shape).astype(np.float32))) for _ in range(4)) <= 1


def test_hot_pixels_are_not_peaks(backend):
    rng = np.random.default_rng(37)
    shape = (512, 512)
    geometry = DetectorGeometry(shape, 256.0, 256.0, np.ones(shape, np.int8))
    frame = rng.poisson(0.1, shape).astype(np.int32)
    frame.ravel()[rng.choice(frame.size, 50, replace=False)] = rng.integers(200, 60000, 50)
    assert len(auto_detector(backend, geometry).find(frame)) == 0


def test_float_copy_and_masked_regions(backend):
    config = SimulationConfig(hit_fraction=1.0, detector="512x512", seed=38).validate()
    layout = make_detector_layout(config)
    frame, _, _ = simulate_frame(config, 0, layout)
    detector = auto_detector(backend, layout.geometry())
    table = detector.find(frame)
    assert len(table) > 10
    same = detector.find(frame.astype(np.float32))
    np.testing.assert_allclose(same.fs, table.fs, atol=1e-4)
    rows, cols = np.rint(table.ss).astype(int), np.rint(table.fs).astype(int)
    assert np.all(layout.mask[rows, cols] == 1)


def test_table_types_order_and_factory(backend):
    config = SimulationConfig(hit_fraction=1.0, detector="512x512", seed=39).validate()
    layout = make_detector_layout(config)
    detector = auto_detector(backend, layout.geometry())
    assert detector.name == "auto" and detector.backend is backend
    table = detector.find(simulate_frame(config, 0, layout)[0])
    assert table.fs.dtype == np.float32 and table.npix.dtype == np.int32
    assert np.all(np.diff(table.intensity) <= 0) and np.all(table.snr >= 5.0)
    assert np.all(table.npix >= 2)
    assert len(auto_detector(backend, layout.geometry()).find(np.zeros(layout.shape, np.int32))) == 0


@pytest.mark.skipif(not (REAL / "lcls_rayonix_kapton_hit.h5").exists(), reason="real frames not present")
def test_real_rayonix_hit_gives_a_sensible_count(backend):
    import h5py

    with h5py.File(REAL / "lcls_rayonix_kapton_hit.h5", "r") as handle:
        frame = handle["/entry_1/data_1/data"][0]
        mask = handle["/entry_1/data_1/mask"][()]
        det = handle["/entry_1/instrument_1/detector_1"]
        centre = float(det["beam_center_fs_px"][()]), float(det["beam_center_ss_px"][()])
    table = auto_detector(backend, DetectorGeometry(frame.shape, *centre, mask)).find(frame)
    assert 15 <= len(table) <= 80  # DIALS finds about 38 spots, peakfinder8 (adc 50) about 23
