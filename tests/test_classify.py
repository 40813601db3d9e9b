"""Tests of mpireduce.classify: transform, model file, batched inference, training."""

from __future__ import annotations

import argparse
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.ndimage as ndi

torch = pytest.importorskip("torch")

from mpireduce.classify import command, make_classifier, train  # noqa: E402
from mpireduce.classify import labels as label_sources  # noqa: E402
from mpireduce.classify.infer import CnnClassifier, PeakCountRule, prepare_batch  # noqa: E402
from mpireduce.classify.model import HitCNN, file_sha256, load_model, save_model  # noqa: E402
from mpireduce.classify.transform import InputTransform, max_pool  # noqa: E402
from mpireduce.config import ClassifyConfig, DetectConfig  # noqa: E402
from mpireduce.errors import ConfigError, InputError, ModelError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _StandInPeaks(SimpleNamespace):
    """Used only while the detect package cannot be imported yet."""

    def __len__(self) -> int:
        return len(self.fs)


def make_peaks(fs, ss):
    """A PeakTable (or, while the detect package is incomplete, a stand-in with fs/ss)."""
    fs, ss = np.asarray(fs, np.float32), np.asarray(ss, np.float32)
    try:
        from mpireduce.detect.peaks import PeakTable
    except ImportError:
        return _StandInPeaks(fs=fs, ss=ss)
    zeros = np.zeros(len(fs), np.float32)
    return PeakTable(fs, ss, zeros, np.ones(len(fs), np.int32), zeros, zeros)


class ThresholdDetector:
    """Stand-in peak detector: connected pixels above ``level``, intensity-weighted centroids."""

    def __init__(self, geometry=None, level: float = 50.0):
        self.level = level

    def find(self, frame):
        labels, n = ndi.label(frame > self.level)
        if n == 0:
            return make_peaks([], [])
        centres = np.array(ndi.center_of_mass(frame, labels, range(1, n + 1)))
        return make_peaks(centres[:, 1], centres[:, 0])


def synthetic_frame(rng, hit: bool, shape=(64, 64), n_spots: int = 8, background: float = 5.0):
    """Poisson background, plus bright 2x2 spots when ``hit``."""
    frame = rng.poisson(background, shape).astype(np.int32)
    if hit:
        for _ in range(n_spots):
            r, c = rng.integers(2, shape[0] - 3), rng.integers(2, shape[1] - 3)
            frame[r : r + 2, c : c + 2] += rng.integers(150, 400)
    return frame


@pytest.fixture()
def tiny_model_file(tmp_path):
    torch.manual_seed(1)
    model = HitCNN(in_channels=2, size=16, width=4, depth=3)
    path = tmp_path / "model.pt"
    meta = {"transform": InputTransform(size=16).to_dict(), "threshold": 0.3, "label_source": "truth"}
    save_model(path, model, meta)
    return path


# --- transform -----------------------------------------------------------------------


def test_transform_shape_dtype_and_non_square_frames():
    rng = np.random.default_rng(0)
    peaks = make_peaks([1.0, 30.0], [2.0, 40.0])
    for shape, dtype in [((64, 64), np.uint16), ((60, 70), np.int32), ((33, 17), np.float64)]:
        out = InputTransform(size=16).apply(rng.poisson(4, shape).astype(dtype), None, peaks)
        assert out.shape == (2, 16, 16) and out.dtype == np.float32
        assert np.isfinite(out).all()


def test_max_pool_matches_brute_force_with_padding():
    frame = np.random.default_rng(1).normal(size=(45, 38)).astype(np.float32)
    size, block = 8, 6  # 45 -> padded to 48
    padded = np.zeros((48, 48), np.float32)
    padded[:45, :38] = frame
    expected = np.array([[padded[r * 6 : r * 6 + 6, c * 6 : c * 6 + 6].max() for c in range(8)] for r in range(8)])
    np.testing.assert_array_equal(max_pool(frame, size, block), expected)


def test_image_channel_invariant_to_overall_scale():
    rng = np.random.default_rng(2)
    frame = synthetic_frame(rng, hit=True).astype(np.float32)
    t = InputTransform(size=16, channels=("image",))
    a = t.apply(frame, None, make_peaks([], []))
    b = t.apply(frame * 37.0, None, make_peaks([], []))
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.max() > 1.0  # spots stand out of the normalised background


def test_masked_and_negative_pixels_do_not_count():
    frame = np.full((32, 32), 10, np.int32)
    frame[5, 5] = 100000  # hot pixel, masked
    frame[20, 20] = -500
    mask = np.ones((32, 32), np.int8)
    mask[5, 5] = 0
    out = InputTransform(size=8, channels=("image",)).apply(frame, mask, make_peaks([], []))[0]
    np.testing.assert_allclose(out, np.log1p(1.0), rtol=1e-5)  # uniform: all cells at the median
    unmasked = InputTransform(size=8, channels=("image",)).apply(frame, None, make_peaks([], []))[0]
    assert unmasked[1, 1] > 5 and unmasked.argmax() == 1 * 8 + 1


def test_peak_histogram_counts_peaks_in_view_at_the_right_cell():
    t = InputTransform(size=8, channels=("peaks",))
    # frame 32x32 -> block 4; fs=3.6 rounds to pixel 4 -> column cell 1; outside peaks dropped
    peaks = make_peaks([3.6, 0.0, 31.4, 10.0, -0.6, 40.0], [0.0, 0.0, 31.4, 10.0, 5.0, 5.0])
    out = t.apply(np.zeros((32, 32), np.float32), None, peaks)[0]
    assert out.sum() == 4
    assert out[0, 1] == 1 and out[0, 0] == 1 and out[7, 7] == 1 and out[2, 2] == 1


def test_transform_serialises_and_validates():
    t = InputTransform(size=32, channels=["peaks", "image"])
    again = InputTransform.from_dict(json.loads(json.dumps(t.to_dict())))
    assert again == t and again.channels == ("peaks", "image")
    with pytest.raises(ValueError):
        InputTransform(channels=("image", "phase"))
    with pytest.raises(ValueError):
        InputTransform.from_dict({"size": 8, "channels": ["image"], "crop": 3})


# --- model file ----------------------------------------------------------------------


def test_save_load_round_trip_gives_identical_scores(tiny_model_file):
    batch = np.random.default_rng(3).normal(size=(5, 2, 16, 16)).astype(np.float32)
    loaded = load_model(tiny_model_file)
    again = load_model(tiny_model_file)
    scores = loaded.predict(batch)
    assert scores.shape == (5,) and np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_array_equal(scores, again.predict(batch))
    assert loaded.threshold == 0.3 and loaded.transform == InputTransform(size=16)
    assert loaded.sha256 == file_sha256(tiny_model_file)
    meta = loaded.metadata
    assert meta["classes"] == ["miss", "hit"] and meta["architecture"]["name"] == "HitCNN"
    assert meta["architecture"]["kwargs"]["width"] == 4 and meta["torch_version"] == torch.__version__
    with pytest.raises(ValueError):
        loaded.predict(batch[:, :1])


def test_load_refuses_missing_and_non_model_files(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.pt")
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    with pytest.raises(ModelError):
        load_model(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ModelError, match="not an mpireduce model"):
        load_model(other)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(other.read_bytes()[:64])
    with pytest.raises(ModelError, match="corrupt"):
        load_model(truncated)


class _Payload:
    """Unpickling this would create a marker file: weights_only loading must refuse it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_refuses_pickled_objects_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": "mpireduce-hitcnn", "format_version": 1, "state_dict": {}, "metadata": _Payload(marker)}
    torch.save(payload, path)
    with pytest.raises(ModelError, match="refused"):
        load_model(path)
    assert not marker.exists()


def test_load_refuses_mismatched_architecture(tmp_path, tiny_model_file):
    payload = torch.load(tiny_model_file, weights_only=True)
    meta = json.loads(payload["metadata"])
    meta["architecture"]["kwargs"]["width"] = 8
    payload["metadata"] = json.dumps(meta)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="does not match"):
        load_model(tmp_path / "bad.pt")


# --- inference -----------------------------------------------------------------------


def test_peak_count_rule_decisions():
    rule = PeakCountRule(min_peaks=10)
    tables = [make_peaks(np.zeros(n), np.zeros(n)) for n in (0, 9, 10, 11, 500)]
    inputs = prepare_batch(rule, [(None, None, t) for t in tables])
    scores = rule.scores(inputs)
    assert rule.decide(scores).tolist() == [False, False, True, True, True]
    assert np.all(np.diff(scores) > 0) and scores.min() >= 0 and scores.max() < 1
    everything = PeakCountRule(0)
    assert everything.decide(everything.scores(inputs)).all()
    assert prepare_batch(rule, []).shape == (0, 1)


def test_cnn_scores_do_not_depend_on_batch_size(tiny_model_file):
    loaded = load_model(tiny_model_file)
    inputs = np.random.default_rng(4).normal(size=(70, 2, 16, 16)).astype(np.float32)
    one = CnnClassifier(loaded, batch_size=1).scores(inputs)
    many = CnnClassifier(loaded, batch_size=64).scores(inputs)
    np.testing.assert_allclose(one, many, atol=1e-6)
    assert CnnClassifier(loaded, 64).scores(inputs[:0]).shape == (0,)


def test_make_classifier_from_config(tmp_path, tiny_model_file):
    rule = make_classifier(ClassifyConfig(min_peaks=7))
    assert isinstance(rule, PeakCountRule) and rule.min_peaks == 7
    clf = make_classifier(ClassifyConfig(model="model.pt", threshold=0.8, batch_size=3, device="cpu"),
                          base_dir=str(tmp_path))
    assert isinstance(clf, CnnClassifier) and clf.threshold == 0.8 and clf.batch_size == 3
    assert clf.decide(np.array([0.79, 0.8])).tolist() == [False, True]
    assert make_classifier(ClassifyConfig(model=str(tiny_model_file))).threshold == 0.3
    frame = synthetic_frame(np.random.default_rng(5), hit=True)
    assert clf.prepare(frame, None, make_peaks([3.0], [4.0])).shape == clf.input_shape
    assert clf.describe()["model_sha256"] == file_sha256(tiny_model_file)
    assert clf.detect_differences(DetectConfig()) == {}  # the fixture's metadata has no detect settings
    with pytest.raises(ModelError):
        make_classifier(ClassifyConfig(model="missing.pt"), base_dir=str(tmp_path))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError):
            make_classifier(ClassifyConfig(model=str(tiny_model_file), device="cuda"))


# --- training ------------------------------------------------------------------------


def test_threshold_choice_and_metrics():
    scores = np.array([0.9, 0.7, 0.3, 0.2, 0.1, 0.02])
    labels = np.array([1, 1, 1, 0, 0, 0])
    assert train.choose_threshold(scores, labels) == pytest.approx(0.3)
    assert train.choose_threshold(scores, labels, target_sensitivity=0.6) == pytest.approx(0.5)  # 0.7, capped
    assert train.choose_threshold(np.array([0.01, 0.0]), np.array([1, 0])) == pytest.approx(0.05)
    m = train.binary_metrics(scores, labels, 0.25)
    assert (m["sensitivity"], m["specificity"], m["tp"], m["fp"]) == (1.0, 1.0, 3, 0)


def test_split_is_stratified_and_disjoint():
    labels = np.array([1] * 10 + [0] * 40)
    tr, va = train.split_indices(labels, 0.2, seed=0)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 50
    assert labels[va].sum() == 2 and (labels[va] == 0).sum() == 8


def test_peak_quartile_labels():
    labels = label_sources.peak_quartile_labels(np.arange(100))
    assert (labels == 1).sum() == 25 and (labels == 0).sum() == 25 and labels[50] == -1
    with pytest.raises(InputError):
        label_sources.peak_quartile_labels(np.zeros(40))


def _synthetic_set(n: int, seed: int, size: int = 16):
    rng = np.random.default_rng(seed)
    t, det = InputTransform(size=size), ThresholdDetector()
    labels = (rng.random(n) < 0.3).astype(np.int64)
    inputs = []
    for hit in labels:
        frame = synthetic_frame(rng, bool(hit))
        inputs.append(t.apply(frame, None, det.find(frame)))
    return np.stack(inputs), labels


def test_quick_training_separates_synthetic_hits():
    inputs, labels = _synthetic_set(120, seed=6)
    options = train.TrainOptions(epochs=15, batch_size=16, width=4, seed=0)
    result = train.fit(inputs, labels, options, report=lambda _msg: None)
    assert result.metrics["n_val"] == 24
    assert result.metrics["sensitivity"] == 1.0 and result.metrics["specificity"] >= 0.9
    assert 0.05 <= result.threshold <= 0.5
    test_inputs, test_labels = _synthetic_set(60, seed=7)
    decided = train.predict_scores(result.model, test_inputs) >= result.threshold
    assert np.mean(decided == test_labels.astype(bool)) >= 0.9


def test_train_command_end_to_end_on_a_tiny_cxi_run(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(8)
    kinds = np.array(["hit" if rng.random() < 0.4 else "miss" for _ in range(60)])
    run = tmp_path / "run.h5"
    with h5py.File(run, "w") as f:
        f["/entry_1/data_1/data"] = np.stack([synthetic_frame(rng, k == "hit") for k in kinds])
        f["/entry_1/data_1/mask"] = np.ones((64, 64), np.int8)
        f["/entry_1/instrument_1/detector_1/beam_center_fs_px"] = 31.5
        f["/entry_1/instrument_1/detector_1/beam_center_ss_px"] = 31.5
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "m.pt"
    args = parser.parse_args([str(run), "-o", str(out), "--epochs", "10", "--size", "16", "--width", "4",
                              "--batch-size", "8"])
    truth = lambda path: SimpleNamespace(kind=kinds)  # noqa: E731
    assert command.main(args, detector_factory=ThresholdDetector, truth_reader=truth) == 0
    loaded = load_model(out)
    meta = loaded.metadata
    assert meta["label_source"] == "truth" and meta["training_data"][0]["sha256"] == file_sha256(run)
    assert meta["validation"]["n_val"] == 12 and "hit" in meta["validation"]["recall_by_kind"]
    assert "sensitivity" in capsys.readouterr().out
    clf = CnnClassifier(loaded)
    assert clf.detect_differences(DetectConfig()) == {}
    assert clf.detect_differences(DetectConfig(min_snr=7.0, backend="numpy")) == {"min_snr": (5.0, 7.0)}
    with pytest.raises(InputError, match="exists"):
        command.main(args, detector_factory=ThresholdDetector, truth_reader=truth)
    assert os.path.getsize(out) > 0


def test_label_file_gives_labels_by_run_name_and_index(tmp_path):
    runs = [str(tmp_path / "a.h5"), str(tmp_path / "sub" / "b.h5")]
    label_file = tmp_path / "labels.csv"
    label_file.write_text("file,index,label\n# checked by hand\na.h5,0,hit\na.h5,2,miss\n"
                          f"{runs[1]},1,1\nb.h5,0,0\n")
    run, event = np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 0, 1])
    labels, kinds = label_sources.event_labels(str(label_file), runs, run, event, np.zeros(5))
    assert labels.tolist() == [1, -1, 0, 0, 1] and kinds is None
    label_file.write_text("a.h5,0,maybe\n")
    with pytest.raises(InputError, match="'maybe' is not hit, miss"):
        label_sources.file_labels(str(label_file), runs, run, event)
    label_file.write_text("c.h5,0,hit\n")
    with pytest.raises(InputError, match="'c.h5' is not one of the training runs"):
        label_sources.file_labels(str(label_file), runs, run, event)
    label_file.write_text("a.h5,0,hit\n")
    with pytest.raises(InputError, match="1 hits and 0 misses"):
        label_sources.file_labels(str(label_file), runs, run, event)
    with pytest.raises(InputError, match="not 'truth', 'peaks' or an existing label file"):
        label_sources.event_labels("truht", runs, run, event, np.zeros(5))
