"""Tests of the resolution-shell x azimuthal-sector descriptor (seed 000)."""

from __future__ import annotations

import numpy as np
import pytest

from mpireduce.backend import cupy_available, get_backend
from mpireduce.config import DescriptorConfig, DetectConfig
from mpireduce.detect import PeakTable, make_detector
from mpireduce.detect.descriptor import Descriptor
from mpireduce.errors import ConfigError
from mpireduce.geometry import DetectorGeometry
from mpireduce.simulate import SimulationConfig, make_detector_layout, simulate_frame

SHAPE = (1024, 1024)


@pytest.fixture(params=["numpy", "cupy"])
def backend(request):
    if request.param == "cupy" and not cupy_available():
        pytest.skip("cupy with a GPU is not available here")
    return get_backend(request.param)


def geometry(pixel_size_m=75e-6, distance_m=0.1, wavelength_A=1.0) -> DetectorGeometry:
    return DetectorGeometry(SHAPE, 511.5, 520.25, np.ones(SHAPE, np.int8), pixel_size_m,
                            distance_m, wavelength_A)


def peaks_at(fs, ss) -> PeakTable:
    n = len(fs)
    f = np.ones(n, np.float32)
    return PeakTable(np.asarray(fs, np.float32), np.asarray(ss, np.float32), f, np.full(n, 2, np.int32), f, f)


def test_counts_sum_to_the_peaks_in_range():
    geo = geometry()
    config = DescriptorConfig(n_shells=6, n_sectors=5, d_max_A=10.0, d_min_A=2.5)
    rng = np.random.default_rng(1)
    fs, ss = rng.uniform(0, SHAPE[1], 500), rng.uniform(0, SHAPE[0], 500)
    vector = Descriptor(config, geo).compute(peaks_at(fs, ss))
    d = geo.resolution_A(np.hypot(fs - geo.beam_center_fs, ss - geo.beam_center_ss))
    in_range = (d >= 2.5) & (d <= 10.0)
    assert vector.dtype == np.float32 and vector.shape == (30,)
    assert vector.sum() == in_range.sum() and 0 < in_range.sum() < 500


def test_shells_and_sectors_are_where_they_should_be():
    geo = geometry()
    config = DescriptorConfig(n_shells=4, n_sectors=4, d_max_A=20.0, d_min_A=2.0, shell_spacing="inv_d2")
    desc = Descriptor(config, geo)
    # a peak at 3 A straight along +fs: 1/d^2 = 0.111 lies in shell 1 of edges 0.0025..0.25
    radius = geo.distance_m * np.tan(2 * np.arcsin(1.0 / (2 * 3.0))) / geo.pixel_size_m
    region = desc.regions(np.array([geo.beam_center_fs + radius]), np.array([geo.beam_center_ss]))
    assert region[0] == 1 * 4 + 2  # angle 0 is half a turn from -pi: sector 2 of 4
    assert desc.names[6] == "shell1_sector2" and len(desc.names) == desc.size == 16


def test_empty_table_and_out_of_range_peaks():
    desc = Descriptor(DescriptorConfig(d_max_A=20.0, d_min_A=3.0), geometry())
    assert not desc.compute(PeakTable.empty()).any()
    centre = peaks_at([511.5], [520.25])  # d = inf at the beam centre: dropped
    corner = peaks_at([0.0], [0.0])  # beyond d_min
    assert desc.compute(centre).sum() == 0 and desc.compute(corner).sum() == 0


def test_missing_physics_names_the_keys():
    geo = DetectorGeometry(SHAPE, 511.5, 520.25, np.ones(SHAPE, np.int8), pixel_size_m=75e-6)
    with pytest.raises(ConfigError, match="distance_m.*wavelength_A"):
        Descriptor(DescriptorConfig(), geo)


def test_same_crystal_on_two_detector_geometries(backend):
    """Same frames (orientation, crystal) seen at 75 um/0.10 m and 110 um/0.13 m."""
    config = DescriptorConfig(n_shells=4, n_sectors=4, d_max_A=12.0, d_min_A=3.0)
    vectors = []
    for pixel, distance in ((75e-6, 0.10), (110e-6, 0.13)):
        sim = SimulationConfig(hit_fraction=1.0, weak_fraction=0.0, multi_fraction=0.0, detector="1M",
                               pixel_size_m=pixel, distance_m=distance, seed=41).validate()
        layout = make_detector_layout(sim)
        detector = make_detector(DetectConfig(mode="auto", backend=backend.name), layout.geometry(), backend)
        desc = Descriptor(config, layout.geometry())
        vectors.append(np.concatenate([desc.compute(detector.find(simulate_frame(sim, i, layout)[0]))
                                       for i in range(2)]))
    a, b = vectors
    assert a.sum() > 50
    cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cosine >= 0.95 and abs(a.sum() - b.sum()) <= 0.15 * a.sum()
