"""Tests of ``mpireduce evaluate``: metrics, and reports for both model kinds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mpireduce.evaluate import classification_metrics, confusion_matrix, hit_miss_metrics, run_cli

torch = pytest.importorskip("torch")


def test_confusion_matrix_and_per_class_scores():
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0])
    cm = confusion_matrix(truth, predicted, 4)
    assert cm.sum() == len(truth) and cm[0].tolist() == [2, 1, 0, 0] and cm[2].tolist() == [1, 0, 3, 0]
    m = classification_metrics(truth, predicted, ["a", "b", "c", "d"])
    assert m["per_class"]["a"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert m["per_class"]["c"]["precision"] == pytest.approx(3 / 4)
    assert m["per_class"]["d"]["support"] == 0
    assert m["macro_f1"] == pytest.approx(np.mean([2 / 3, 0.5, 3 / 4]))  # classes without support left out
    assert m["accuracy"] == pytest.approx(6 / 9)


def test_hit_miss_metrics():
    m = hit_miss_metrics([1, 1, 1, 0, 0], [1, 0, 1, 1, 0])
    assert (m["tp"], m["fn"], m["tn"], m["fp"]) == (2, 1, 1, 1)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(0.5)


def _read_confusion(text: str, n_classes: int) -> np.ndarray:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("confusion")) + 2
    return np.array([[int(v) for v in line.split()[1:]] for line in lines[start:start + n_classes]])


def test_evaluate_siamese_model_writes_text_and_png(tmp_path, capsys):
    from mpireduce.classify.train_spi import build_parser, train_from_args
    from mpireduce.simulate.spi import SpiConfig, simulate_spi_run

    config = SpiConfig(n_frames=40, kind_weights=(1, 1, 1, 1), detector_px=64, seed=11)
    simulate_spi_run(tmp_path / "spi.h5", config)
    args = build_parser().parse_args([str(tmp_path / "spi.h5"), "-o", str(tmp_path / "spi.pt"), "--size", "32",
                                      "--labels-per-class", "4", "--steps", "4", "--threads", "1"])
    train_from_args(args, report=lambda _: None)
    assert run_cli([str(tmp_path / "spi.pt"), str(tmp_path / "spi.h5"), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep.txt").read_text()
    cm = _read_confusion(text, 4)
    assert cm.sum() == 40 and "macro-F1" in text and "sensitivity" in text
    assert (tmp_path / "rep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_hitcnn_model_uses_stored_detector(sim_run, tmp_path):
    from mpireduce.classify.model import HitCNN, save_model
    from mpireduce.classify.transform import InputTransform
    from mpireduce.config import DetectConfig

    transform = InputTransform(size=32)
    meta = {"transform": transform.to_dict(), "threshold": 0.5,
            "detect": dataclasses.asdict(DetectConfig(backend="numpy"))}
    save_model(tmp_path / "cnn.pt", HitCNN(in_channels=2, size=32, width=4), meta)
    assert run_cli([str(tmp_path / "cnn.pt"), str(sim_run), "--out", str(tmp_path / "cnn"), "--max-events", "20"]) == 0
    text = (tmp_path / "cnn.txt").read_text()
    assert _read_confusion(text, 2).sum() == 20
    assert "specificity" in text and (tmp_path / "cnn.png").stat().st_size > 1000
