"""Diffuse-scattering simulation and the features + PCA + logistic-regression classifier."""

import h5py
import numpy as np
import pytest
import torch

from mpireduce.classify.diffuse import (DiffuseClassifier, DiffuseFeatures, FeatureSettings, fit_diffuse_model,
                                        load_diffuse_model, save_diffuse_model)
from mpireduce.errors import ModelError
from mpireduce.simulate import SimulationConfig, make_detector_layout, read_truth
from mpireduce.simulate.diffuse import read_diffuse_labels, render_diffuse_frame, simulate_diffuse_run

CONFIG = SimulationConfig(n_frames=8, detector="256x256", seed=7, hit_fraction=1.0)


def _between_spots(layout, spots, radius=3):
    """Good pixels farther than ``radius`` from every listed spot."""
    keep = layout.mask.astype(bool).copy()
    ss, fs = np.indices(layout.shape)
    for x, y in zip(spots["fs"], spots["ss"]):
        keep &= (fs - x) ** 2 + (ss - y) ** 2 > radius**2
    return keep


@pytest.mark.parametrize("index", [0, 1, 2])
def test_diffuse_frames_have_more_signal_between_spots(index):
    layout = make_detector_layout(CONFIG)
    plain = render_diffuse_frame(CONFIG, index, layout, noise=False, force=False)
    diffuse = render_diffuse_frame(CONFIG, index, layout, noise=False, force=True, strength_range=(0.05, 0.05))
    np.testing.assert_array_equal(plain.bases, diffuse.bases)  # same crystal, same orientation
    between = _between_spots(layout, plain.spots)
    extra = diffuse.frame[between].astype(np.float64) - plain.frame[between]
    assert np.all(extra >= 0)
    assert extra.sum() > 0.02 * layout.background.sum()  # most of the 5 % lies between the spots
    assert diffuse.diffuse and not plain.diffuse and diffuse.strength == pytest.approx(0.05)


def test_simulated_run_has_cxi_layout_and_truth(tmp_path):
    path = tmp_path / "run.h5"
    summary = simulate_diffuse_run(path, SimulationConfig(n_frames=6, detector="128x128", seed=3))
    with h5py.File(path, "r") as f:
        assert f["entry_1/data_1/data"].shape == (6, 128, 128)
        assert "entry_1/data_1/mask" in f
    truth = read_truth(path)
    labels = read_diffuse_labels(path)
    assert truth.kind_names == ("non_diffuse", "diffuse")
    np.testing.assert_array_equal(truth.kind, labels["diffuse"].astype(np.int8))
    assert np.all(labels["sfx_kind"] != 0)  # every frame is a crystal hit
    assert np.all((labels["diffuse_strength"] > 0) == labels["diffuse"])
    assert sum(summary["counts"].values()) == 6


def _features(n, seed, strength):
    """Feature vectors and labels of ``n`` 256x256 frames (alternating labels)."""
    config = SimulationConfig(n_frames=n, detector="256x256", seed=seed, hit_fraction=1.0)
    layout = make_detector_layout(config)
    extractor = DiffuseFeatures(FeatureSettings(), layout.geometry())
    labels = np.arange(n) % 2
    feats = [extractor.compute(render_diffuse_frame(config, i, layout, force=bool(labels[i]),
                                                    strength_range=strength).frame, layout.mask)
             for i in range(n)]
    return np.stack(feats), labels, layout


def test_tiny_training_separates_an_easy_set():
    x_train, y_train, _ = _features(24, 21, (0.3, 0.6))
    x_test, y_test, _ = _features(12, 22, (0.3, 0.6))
    model = fit_diffuse_model(x_train, y_train, FeatureSettings(), n_components=10, l2=0.1)
    assert np.mean((model.predict(x_train) >= 0.5) == y_train) >= 0.95
    assert np.mean((model.predict(x_test) >= 0.5) == y_test) >= 0.9


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    rng = np.random.default_rng(0)
    settings = FeatureSettings()
    x = rng.normal(size=(40, settings.size))
    y = (x[:, 0] + 0.3 * rng.normal(size=40) > 0).astype(int)
    model = fit_diffuse_model(x, y, settings, n_components=20, metadata={"training": {"files": []}})
    path = tmp_path / "diffuse.pt"
    save_diffuse_model(path, model)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "mpireduce-diffuse"
    loaded = load_diffuse_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.metadata["architecture"]["name"] == "DiffusePcaLogistic"
    assert loaded.metadata["classes"] == ["non_diffuse", "diffuse"]
    layout = make_detector_layout(CONFIG)
    clf = DiffuseClassifier(loaded, layout.geometry())
    frame = render_diffuse_frame(CONFIG, 0, layout).frame
    inputs = np.stack([clf.prepare(frame, layout.mask, None)])
    assert inputs.shape == (1, *clf.input_shape)
    assert clf.decide(clf.scores(inputs)).dtype == bool
    assert clf.describe()["model_sha256"] == loaded.metadata["sha256"]


def test_load_refuses_other_files(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"format": "mpireduce-hitcnn", "format_version": 1}, bad)
    with pytest.raises(ModelError):
        load_diffuse_model(bad)
    with pytest.raises(ModelError):
        load_diffuse_model(tmp_path / "missing.pt")
