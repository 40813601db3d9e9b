"""Every model kind goes the same way: ``simulate`` -> ``train`` -> ``evaluate`` -> ``run``.

Real command lines on real (small) simulated runs: the diffuse-scattering classifier
(seed 002), the descriptor MLP (seed 000) and the SPI Siamese classifier (seed 004) each
train with ``mpireduce train``, report with ``mpireduce evaluate`` and serve ``mpireduce run``
through the same batched classifier interface as the CNN.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import check, run_cli, write_job

h5py = pytest.importorskip("h5py")
pytest.importorskip("torch")
import hdf5plugin  # noqa: E402,F401  (compressed runs)


def _confusion_total(report_text: str, n_classes: int) -> int:
    lines = report_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("confusion")) + 2
    return sum(int(v) for line in lines[start:start + n_classes] for v in line.split()[1:])


def _events(path):
    with h5py.File(path, "r") as f:
        events = {name: f[f"mpireduce/events/{name}"][()] for name in ("hit", "score", "kept_index", "status")}
        classes = f["mpireduce/events/class_scores"] if "mpireduce/events/class_scores" in f else None
        events["class_scores"] = classes[()] if classes is not None else None
        events["class_names"] = json.loads(classes.attrs["columns"]) if classes is not None else None
        events["classifier"] = json.loads(f["mpireduce/provenance/classifier"][()])
        events["n_kept"] = f["entry_1/data_1/data"].shape[0]
    return events


@pytest.fixture(scope="module")
def diffuse_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diffuse")
    for name, seed in (("train", 21), ("test", 22)):
        check(run_cli("simulate", folder / f"{name}.h5", "--experiment", "diffuse", "--frames", 40,
                      "--detector", "256x256", "--seed", seed))
    return folder


def test_diffuse_model_trains_evaluates_and_runs(diffuse_runs, tmp_path):
    train, test, model = diffuse_runs / "train.h5", diffuse_runs / "test.h5", tmp_path / "diffuse.pt"
    out = check(run_cli("train", train, "-o", model, "--model", "diffuse")).stdout
    assert "held-out 8 events: accuracy" in out
    report = check(run_cli("evaluate", model, test, "--out", tmp_path / "rep")).stdout
    assert "(diffuse)" in report and "diffuse/non-diffuse: sensitivity" in report
    assert _confusion_total(report, 2) == 40 and (tmp_path / "rep.png").is_file()
    job = write_job(tmp_path, [test], model=model)
    check(run_cli("run", job, np=2))
    events = _events(tmp_path / "out.cxi")
    assert events["classifier"]["kind"] == "diffuse" and events["class_scores"] is None
    assert np.all((events["score"] >= 0) & (events["score"] <= 1))
    assert np.array_equal(events["hit"], events["score"] >= events["classifier"]["threshold"])
    assert events["n_kept"] == events["hit"].sum() == np.sum(events["kept_index"] >= 0)


def test_diffuse_training_refuses_runs_without_diffuse_truth(sim_run, tmp_path):
    proc = run_cli("train", sim_run, "-o", tmp_path / "d.pt", "--model", "diffuse")
    assert proc.returncode == 2 and "--experiment diffuse" in proc.stderr
    assert not (tmp_path / "d.pt").exists()


def test_descriptor_model_evaluates_on_its_own_geometry(sim_run, tmp_path):
    model = tmp_path / "descriptor.pt"
    job = write_job(tmp_path, [sim_run], detect={"mode": "auto"})
    check(run_cli("train", sim_run, "-o", model, "--model", "descriptor", "--epochs", 5, "--detect-config", job))
    report = check(run_cli("evaluate", model, sim_run, "--out", tmp_path / "rep", "--max-events", 30)).stdout
    assert "(descriptor)" in report and _confusion_total(report, 2) == 30 and "hit/miss: sensitivity" in report


@pytest.fixture(scope="module")
def spi_model(tmp_path_factory):
    """An SPI run, and a Siamese model trained on another by ``mpireduce train --model spi``."""
    folder = tmp_path_factory.mktemp("spi")
    for name, seed in (("train", 31), ("test", 32)):
        check(run_cli("simulate", folder / f"{name}.h5", "--experiment", "spi", "--frames", 48, "--detector", 64,
                      "--kind-weights", 1, 1, 1, 1, "--seed", seed))
    check(run_cli("train", folder / "train.h5", "-o", folder / "spi.pt", "--model", "spi",
                  "--spi=--size 32 --labels-per-class 4 --steps 4 --members 1 --threads 1"))
    return folder


def test_spi_job_keeps_the_chosen_class_and_writes_class_scores(spi_model, tmp_path):
    job = write_job(tmp_path, [spi_model / "test.h5"], model=spi_model / "spi.pt",
                    classify={"keep_classes": ["single"]}, detect={"mode": "auto"})
    check(run_cli("run", job, np=2))
    events = _events(tmp_path / "out.cxi")
    assert events["classifier"]["kind"] == "siamese" and events["classifier"]["keep_classes"] == ["single"]
    assert events["class_names"] == ["no_hit", "single", "multi", "unintended"]
    probabilities = events["class_scores"]
    assert probabilities.shape == (48, 4) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    np.testing.assert_allclose(events["score"], probabilities[:, 1], atol=1e-6)  # P(single)
    assert np.array_equal(events["hit"], events["score"] >= events["classifier"]["threshold"])
    assert events["n_kept"] == events["hit"].sum()
    inspect = check(run_cli("inspect", tmp_path / "out.cxi")).stdout
    assert "most likely class: no_hit" in inspect


def test_spi_job_refuses_an_unknown_class(spi_model, tmp_path):
    job = write_job(tmp_path, [spi_model / "test.h5"], model=spi_model / "spi.pt", classify={"keep_classes": ["singel"]})
    proc = run_cli("run", job)
    assert proc.returncode == 2 and "singel" in proc.stderr and "no_hit" in proc.stderr
    assert not (tmp_path / "out.cxi").exists()


def test_cnn_trains_from_a_label_file(sim_run, tmp_path):
    from mpireduce.simulate import read_truth

    hits = read_truth(sim_run).is_hit
    rows = [f"{sim_run.name},{i},{'hit' if hit else 'miss'}" for i, hit in enumerate(hits) if i % 2 == 0]
    (tmp_path / "labels.csv").write_text("file,index,label\n" + "\n".join(rows) + "\n")
    model = tmp_path / "cnn.pt"
    check(run_cli("train", sim_run, "-o", model, "--labels", tmp_path / "labels.csv", "--epochs", 2, "--size", 32))
    from mpireduce.classify.model import load_model

    meta = load_model(model).metadata
    assert meta["label_source"].endswith("labels.csv") and meta["events"]["total"] == len(hits)
    assert meta["events"]["hits"] + meta["events"]["misses"] == len(rows)
