"""Tests of the SPI simulator and the few-shot Siamese classifier."""

from __future__ import annotations

import dataclasses

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from mpireduce.errors import ModelError
from mpireduce.simulate.particles import Grid, add_particle
from mpireduce.simulate.spi import (SPI_KIND_NAMES, SpiConfig, _draw_particles, detector_mask, expected_pattern,
                                    read_spi_truth, simulate_spi_run)

torch = pytest.importorskip("torch")

SMALL = SpiConfig(n_frames=24, kind_weights=(1, 1, 1, 1), detector_px=64, seed=3)


def radial_profile(pattern: np.ndarray) -> np.ndarray:
    """Mean of ``pattern`` in 1-pixel rings around the FFT centre of the 2x-binned grid."""
    n = pattern.shape[0]
    y, x = np.mgrid[0:n, 0:n] - (n / 2 - 0.25)
    rings = np.floor(np.hypot(y, x)).astype(int).ravel()
    return np.bincount(rings, pattern.ravel()) / np.bincount(rings)


def test_run_file_layout_and_truth(tmp_path):
    summary = simulate_spi_run(tmp_path / "spi.h5", SMALL)
    truth = read_spi_truth(tmp_path / "spi.h5")
    assert truth.kind_names == SPI_KIND_NAMES
    assert sum(summary["counts"].values()) == len(truth.kind) == 24
    assert set(np.unique(truth.kind)) == {0, 1, 2, 3}
    assert np.all((truth.shape == "none") == (truth.kind == 0))
    assert np.all(truth.n_particles[truth.kind == 1] == 1)
    assert np.all(np.isin(truth.n_particles[truth.kind == 2], [2, 3]))
    assert np.all(truth.separation[truth.kind == 2] > 0) and np.all(truth.separation[truth.kind != 2] == 0)
    assert set(truth.shape[truth.kind == 3]) <= {"droplet", "rod", "aggregate"}
    with h5py.File(tmp_path / "spi.h5", "r") as f:
        data, mask = f["entry_1/data_1/data"][()], f["entry_1/data_1/mask"][()]
        centre = f["entry_1/instrument_1/detector_1/beam_center_fs_px"][()]
        assert f["entry_1/instrument_1/source_1/wavelength_A"][()] == SMALL.wavelength_A
    assert data.shape == (24, 64, 64) and mask.shape == (64, 64)
    assert np.all(data[:, mask == 0] == 0)
    assert mask[int(centre), int(centre)] == 0  # beamstop
    hits = data[truth.kind != 0].sum(axis=(1, 2))
    assert hits.min() > 3 * data[truth.kind == 0].sum(axis=(1, 2)).max()


def test_speckle_size_scales_inversely_with_particle_size():
    config = SpiConfig(detector_px=128)
    first_minimum = {}
    for size in (40.0, 80.0):
        density = np.zeros((config.grid.n,) * 2, np.float32)
        add_particle(density, config.grid, "sphere", size, (0.0, 0.0), np.random.default_rng(0))
        profile = radial_profile(expected_pattern(config, density))
        first_minimum[size] = int(np.argmax(np.diff(profile) > 0))  # first ring where it rises again
    expected = 1.43 / 40.0 / config.pixel_s  # sphere: first zero at s = 1.43 / D
    assert abs(first_minimum[40.0] - expected) <= 1.5
    assert first_minimum[40.0] / first_minimum[80.0] == pytest.approx(2.0, rel=0.2)


def test_multi_hits_extend_the_autocorrelation():
    config = SpiConfig(detector_px=64, shapes=("sphere",), size_nm=(50.0, 50.0))
    extent = {}
    for kind in (1, 2):
        density = np.zeros((config.grid.n,) * 2, np.float32)
        _draw_particles(config, kind, np.random.default_rng(4), density)
        auto = np.abs(np.fft.fftshift(np.fft.ifft2(expected_pattern(config, density))))
        y, x = np.nonzero(auto > 0.01 * auto.max())
        extent[kind] = np.hypot(y - auto.shape[0] / 2, x - auto.shape[1] / 2).max() * config.grid.dx
    assert extent[1] < 1.3 * 50.0  # one sphere: autocorrelation out to its diameter
    assert extent[2] > 1.6 * 50.0  # a cluster: side lobes at the separation vectors


def test_mask_has_beamstop_and_gap():
    mask = detector_mask(SMALL)
    assert mask.dtype == np.int8 and 0 < mask.mean() < 0.97
    assert np.all(mask[mask.shape[0] // 2 - 1] == 0)  # the horizontal gap through the beam


def _easy_inputs(rng, n_per_class):
    """Two trivially different classes of 3x16x16 inputs: noise, and noise plus a bright square."""
    x = rng.normal(0, 0.3, (2 * n_per_class, 3, 16, 16)).astype(np.float32)
    x[n_per_class:, :, 4:12, 4:12] += 2.0
    return x, np.repeat([0, 1], n_per_class)


def test_prototype_classifier_learns_an_easy_set_and_round_trips(tmp_path):
    from mpireduce.classify.siamese import SpiClassifier, load_siamese, save_siamese
    from mpireduce.classify.spi_transform import SpiTransform
    from mpireduce.classify.train_spi import SiameseOptions, fit_siamese, score_events

    rng = np.random.default_rng(0)
    x, y = _easy_inputs(rng, 8)
    options = SiameseOptions(steps=25, per_class_batch=6, width=4, dim=8, threads=1)
    net, prototypes, history = fit_siamese(x, y, 2, options, report=lambda _: None)
    test_x, test_y = _easy_inputs(rng, 20)
    scores = score_events(net, prototypes, test_x, options.temperature)
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert np.mean(scores.argmax(axis=1) == test_y) == 1.0

    transform = SpiTransform(size=16, crop=16)
    meta = {"transform": transform.to_dict(), "temperature": options.temperature, "classes": ["no_hit", "single"]}
    save_siamese(tmp_path / "m.pt", net, prototypes, meta)
    model = load_siamese(tmp_path / "m.pt")
    assert model.classes == ("no_hit", "single") and model.metadata["hit_classes"] == ["single"]
    assert np.allclose(model.class_scores(test_x), scores, atol=1e-5)
    clf = SpiClassifier(model, centre=(7.5, 7.5))
    assert np.array_equal(clf.decide(clf.scores(test_x)), test_y == 1)
    assert clf.prepare(rng.poisson(2.0, (16, 16)), None).shape == (3, 16, 16)

    ensemble, protos, _ = fit_siamese(x, y, 2, dataclasses.replace(options, steps=5, members=2), lambda _: None)
    save_siamese(tmp_path / "e.pt", ensemble, protos, meta)
    loaded = load_siamese(tmp_path / "e.pt")
    assert loaded.metadata["architecture"]["name"] == "EmbeddingEnsemble" and loaded.net.dim == 16
    assert np.allclose(loaded.class_scores(test_x), score_events(ensemble, protos, test_x, 0.25), atol=1e-5)


def test_pickled_objects_are_refused(tmp_path):
    from mpireduce.classify.siamese import load_siamese

    torch.save({"format": "mpireduce-siamese", "format_version": 1, "thing": Grid(4, 1.0)}, tmp_path / "evil.pt")
    with pytest.raises(ModelError):
        load_siamese(tmp_path / "evil.pt")


def test_polar_transform_turns_a_rotation_into_an_angle_shift():
    from mpireduce.classify.spi_transform import SpiTransform

    frame = np.random.default_rng(5).poisson(20.0, (64, 64)).astype(np.int32)
    transform = SpiTransform(size=16, crop=64)
    assert transform.layout == "polar" and transform.output_shape == (3, 16, 16)
    centre = (31.5, 31.5)  # the array centre, about which np.rot90 turns the frame
    out, turned = transform.apply(frame, None, centre), transform.apply(np.rot90(frame).copy(), None, centre)
    # 16 angles span half a turn, so a quarter turn is a circular shift by 8 (either way)
    shifts = [s for s in range(16) if np.allclose(np.roll(out, s, axis=2), turned, atol=1e-4)]
    assert shifts == [8]


def test_fill_rings_and_polar_augmentation():
    from mpireduce.classify.spi_transform import fill_rings
    from mpireduce.classify.train_spi import augment_polar

    rings = np.array([[0, 1, 2], [0, 1, 2]])
    image = np.array([[9.0, 2.0, 5.0], [9.0, 4.0, 7.0]])
    valid = np.array([[False, True, True], [False, False, True]])
    assert np.allclose(fill_rings(image, valid, rings), [[2.0, 2.0, 5.0], [2.0, 2.0, 7.0]])
    batch = torch.arange(2 * 3 * 4 * 8, dtype=torch.float32).reshape(2, 3, 4, 8)
    out = augment_polar(batch, torch.Generator().manual_seed(1))
    for sample, original in zip(out, batch):
        candidates = [torch.roll(o, s, dims=2) for s in range(8) for o in (original, original.flip(2))]
        assert any(torch.equal(sample, c) for c in candidates)


def test_refine_prototypes_follows_the_unlabelled_events():
    from mpireduce.classify.train_spi import refine_prototypes

    support = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)  # one labelled event per class
    angles = np.deg2rad([20.0, 25.0, 30.0, 80.0])  # class 0's unlabelled events lie near 25 degrees
    unlabelled = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    refined = refine_prototypes(support, np.array([0, 1]), unlabelled, 2, iterations=3)
    assert np.allclose(np.linalg.norm(refined, axis=1), 1.0, atol=1e-6)
    assert 10.0 < np.rad2deg(np.arctan2(refined[0, 1], refined[0, 0])) < 20.0  # mean of 0, 20, 25, 30
    assert np.allclose(refine_prototypes(support, np.array([0, 1]), unlabelled, 2, iterations=0), support)
