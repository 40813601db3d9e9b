"""Tests of the descriptor MLP: model file, training, classifier interface, and a real job."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mpireduce.classify import train  # noqa: E402
from mpireduce.classify.descriptor_model import (  # noqa: E402
    DescriptorMLP,
    LoadedDescriptorModel,
    augment_descriptors,
    save_descriptor_model,
)
from mpireduce.classify import make_classifier  # noqa: E402
from mpireduce.classify.infer import DescriptorClassifier, prepare_batch  # noqa: E402
from mpireduce.classify.model import file_sha256, load_model  # noqa: E402
from mpireduce.config import ClassifyConfig, DescriptorConfig, DetectConfig  # noqa: E402
from mpireduce.errors import ConfigError, ModelError  # noqa: E402
from conftest import check, run_cli, write_job  # noqa: E402

SMALL = DescriptorConfig(n_shells=4, n_sectors=4)
AUTO = DetectConfig(mode="auto", backend="numpy")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _metadata(descriptor=SMALL, threshold=0.4) -> dict:
    return {"descriptor": dataclasses.asdict(descriptor), "detect": dataclasses.asdict(AUTO),
            "threshold": threshold, "training_data": [{"file": "x.h5", "sha256": "0" * 64}]}


@pytest.fixture()
def tiny_file(tmp_path):
    torch.manual_seed(2)
    path = tmp_path / "descriptor.pt"
    save_descriptor_model(path, DescriptorMLP(4, 4, hidden=8), _metadata())
    return path


def _vectors(n: int, seed: int, shells: int = 4, sectors: int = 4):
    """Misses: 0-2 stray peaks anywhere; hits: 6-60 peaks, more at low resolution."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.4).astype(np.int64)
    weights = np.repeat(np.linspace(2.0, 1.0, shells), sectors)
    out = np.zeros((n, shells * sectors), np.float32)
    for row, hit in enumerate(labels):
        count = rng.integers(6, 60) if hit else rng.integers(0, 3)
        cells = rng.choice(shells * sectors, size=count, p=weights / weights.sum())
        out[row] = np.bincount(cells, minlength=shells * sectors)
    return out, labels


def test_round_trip_gives_identical_scores(tiny_file):
    loaded, again = load_model(tiny_file), load_model(tiny_file)
    assert isinstance(loaded, LoadedDescriptorModel)
    batch = _vectors(9, seed=1)[0]
    scores = loaded.predict(batch)
    assert scores.shape == (9,) and np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_array_equal(scores, again.predict(batch))
    meta = loaded.metadata
    assert meta["architecture"] == {"name": "DescriptorMLP", "kwargs": {"n_shells": 4, "n_sectors": 4,
                                                                         "hidden": 8, "depth": 2}}
    assert meta["classes"] == ["miss", "hit"] and meta["detect"]["mode"] == "auto"
    assert loaded.descriptor == SMALL and loaded.threshold == 0.4
    assert loaded.sha256 == file_sha256(tiny_file)
    with pytest.raises(ValueError):
        loaded.predict(batch[:, :8])


def _rewrite(tmp_path, source, edit) -> str:
    payload = torch.load(source, weights_only=True)
    meta = json.loads(payload["metadata"])
    edit(meta)
    payload["metadata"] = json.dumps(meta)
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    return path


def test_bad_files_are_refused(tmp_path, tiny_file):
    with pytest.raises(ModelError, match="invalid descriptor-model metadata"):
        load_model(_rewrite(tmp_path, tiny_file, lambda m: m.pop("descriptor")))
    with pytest.raises(ModelError, match="regions"):
        load_model(_rewrite(tmp_path, tiny_file, lambda m: m["descriptor"].update(n_shells=8)))
    with pytest.raises(ModelError, match="does not match"):
        load_model(_rewrite(tmp_path, tiny_file, lambda m: m["architecture"]["kwargs"].update(hidden=16)))
    with pytest.raises(ModelError, match="invalid descriptor-model metadata"):
        load_model(_rewrite(tmp_path, tiny_file, lambda m: m["descriptor"].update(d_min_A=50.0)))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_file.read_bytes()[:100])
    with pytest.raises(ModelError, match="corrupt"):
        load_model(truncated)
    with pytest.raises(ValueError):  # the config must describe the network's input
        save_descriptor_model(tmp_path / "x.pt", DescriptorMLP(4, 4), _metadata(DescriptorConfig()))
    with pytest.raises(ValueError):
        save_descriptor_model(tmp_path / "x.pt", DescriptorMLP(4, 4), {"descriptor": dataclasses.asdict(SMALL)})


def test_augmentation_permutes_sectors_within_shells():
    batch = torch.arange(2 * 16, dtype=torch.float32).view(2, 16)
    out = augment_descriptors(batch.repeat(20, 1), torch.Generator().manual_seed(0), 4, 4)
    grid, source = out.view(-1, 4, 4), batch.repeat(20, 1).view(-1, 4, 4)
    torch.testing.assert_close(grid.sort(dim=2).values, source.sort(dim=2).values)
    assert not torch.equal(out, batch.repeat(20, 1))


def test_tiny_training_separates_hits_from_misses():
    vectors, labels = _vectors(200, seed=3)
    options = train.TrainOptions(epochs=40, batch_size=32, seed=0)
    result = train.fit_descriptor(vectors, labels, options, 4, 4, hidden=16, report=lambda _m: None)
    assert result.metrics["sensitivity"] == 1.0 and result.metrics["specificity"] >= 0.95
    test, test_labels = _vectors(100, seed=4)
    decided = train.predict_scores(result.model, test) >= result.threshold
    assert np.mean(decided == test_labels.astype(bool)) >= 0.95


def test_make_classifier_on_a_simulated_frame(tiny_file):
    from mpireduce.backend import get_backend
    from mpireduce.detect import make_detector
    from mpireduce.simulate import SimulationConfig, make_detector_layout, render_frame

    sim = SimulationConfig(detector="128x128", hit_fraction=1.0, weak_fraction=0.0, seed=3)
    layout = make_detector_layout(sim)
    geometry = layout.geometry()
    config = ClassifyConfig(model=str(tiny_file), batch_size=2, device="cpu")
    clf = make_classifier(config, geometry=geometry)
    assert isinstance(clf, DescriptorClassifier) and clf.input_shape == (16,) and clf.threshold == 0.4
    detector = make_detector(AUTO, geometry, get_backend("numpy"))
    frames = [render_frame(sim, i, layout).frame for i in range(3)]
    inputs = prepare_batch(clf, [(f, geometry.mask, detector.find(f)) for f in frames])
    assert inputs.shape == (3, 16) and inputs.sum() > 0
    scores = clf.scores(inputs)
    np.testing.assert_allclose(scores, load_model(tiny_file).predict(inputs), atol=1e-6)
    assert clf.decide(scores).tolist() == (scores >= 0.4).tolist()
    assert clf.describe()["kind"] == "descriptor" and clf.describe()["descriptor"]["n_shells"] == 4
    assert clf.detect_differences(AUTO) == {}
    assert clf.detect_differences(DetectConfig()) == {"mode": ("auto", "peakfinder8")}
    with pytest.raises(ConfigError, match="geometry"):
        make_classifier(config)
    no_physics = dataclasses.replace(geometry, wavelength_A=None)
    with pytest.raises(ConfigError, match="wavelength_A"):
        make_classifier(config, geometry=no_physics)


def test_job_end_to_end_with_a_descriptor_model(sim_run, tmp_path, capsys):
    import argparse

    import h5py
    import hdf5plugin  # noqa: F401  (compressed output)

    from mpireduce.classify import command
    from mpireduce.simulate import SimulationConfig, read_truth, simulate_run

    train_run = tmp_path / "train.h5"
    simulate_run(train_run, SimulationConfig(n_frames=60, hit_fraction=0.5, detector="256x256", seed=78))
    detect = {"mode": "auto"}
    model = tmp_path / "descriptor.pt"
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([str(train_run), "-o", str(model), "--model", "descriptor", "--epochs", "60",
                              "--detect-config", str(write_job(tmp_path, [train_run], detect=detect))])
    assert command.main(args) == 0 and "sensitivity" in capsys.readouterr().out
    assert load_model(model).metadata["detect"]["mode"] == "auto"
    job = write_job(tmp_path, [sim_run], model=model, detect=detect)
    proc = check(run_cli("run", job))  # one plain rank: the MPI paths are tested with the CNN
    assert "was trained with" not in proc.stderr
    with h5py.File(tmp_path / "out.cxi", "r") as f:
        hit = f["mpireduce/events/hit"][()]
        classifier = json.loads(f["mpireduce/provenance/classifier"][()])
    truth = read_truth(sim_run)
    assert classifier["kind"] == "descriptor" and classifier["model_sha256"] == file_sha256(model)
    assert np.mean(hit == truth.is_hit) >= 0.9
