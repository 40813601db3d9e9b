"""Numbers of the seed classifiers (issue 4): SPI few-shot macro-F1, unseen shape, throughput.

    python bench/classifiers.py [--labels 40 10] [--steps 300] [--frames 1200]

Simulates an SPI training run and an independent test run, trains the Siamese classifier
with N labelled events per class (octahedra never among them), and prints macro-F1 and
per-class precision/recall on the test run, the same on the test run's unseen octahedra
(+ its no_hit and unintended events), and inference images/s at batch 64 on one thread
for the Siamese model and the hit/miss CNN.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mpireduce.classify.model import HitCNN
from mpireduce.classify.siamese import SpiClassifier, load_siamese
from mpireduce.classify.spi_transform import SpiTransform
from mpireduce.classify.train_spi import build_parser, load_spi_run, train_from_args
from mpireduce.evaluate import classification_metrics, format_metrics, hit_miss_metrics
from mpireduce.simulate.spi import SpiConfig, simulate_spi_run

UNSEEN = "octahedron"


def throughput(fn, batch: np.ndarray, repeats: int = 10) -> float:
    """Images/s of ``fn(batch)`` (best of ``repeats`` after a warm-up)."""
    fn(batch)
    best = min(_timed(fn, batch) for _ in range(repeats))
    return len(batch) / best


def _timed(fn, batch) -> float:
    start = time.perf_counter()
    fn(batch)
    return time.perf_counter() - start


def spi_numbers(folder: Path, labels: int, steps: int, test) -> SpiClassifier:
    """Train with ``labels`` per class and print the test-run metrics; returns the classifier."""
    model_path = folder / f"spi{labels}.pt"
    args = build_parser().parse_args([str(folder / "train.h5"), "-o", str(model_path), "--labels-per-class",
                                      str(labels), "--exclude-shape", UNSEEN, "--steps", str(steps), "--overwrite"])
    train_from_args(args, report=lambda _: None)
    clf = SpiClassifier(load_siamese(model_path), test.centre)
    probabilities = clf.class_scores(test.inputs)
    predicted = probabilities.argmax(axis=1)
    names = test.class_names
    overall = classification_metrics(test.labels, predicted, names)
    print(format_metrics(overall, f"SPI test run, {labels} labels/class"))
    hits = hit_miss_metrics(test.labels != 0, clf.decide(clf.scores(test.inputs)))
    print(f"hit/miss: sensitivity {hits['sensitivity']:.3f}, specificity {hits['specificity']:.3f}")
    unseen = (test.shapes == UNSEEN) | np.isin(test.labels, [0, 3])
    m = classification_metrics(test.labels[unseen], predicted[unseen], names)
    print(format_metrics(m, f"unseen shape {UNSEEN} (+ no_hit, unintended), {labels} labels/class"))
    particle = test.shapes == UNSEEN
    acc = float(np.mean(predicted[particle] == test.labels[particle]))
    print(f"SUMMARY labels={labels}: macro-F1 {overall['macro_f1']:.3f}, accuracy {overall['accuracy']:.3f}; "
          f"unseen {UNSEEN}: macro-F1 {m['macro_f1']:.3f}, single/multi accuracy {acc:.3f} ({particle.sum()} events)")
    return clf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[40, 10])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--frames", type=int, default=1200)
    args = parser.parse_args()
    weights = (0.4, 0.25, 0.2, 0.15)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, seed in (("train", 1), ("test", 2)):
            summary = simulate_spi_run(folder / f"{name}.h5", SpiConfig(args.frames, weights, seed=seed))
            print(f"simulated {name}: {summary['counts']} at {summary['frames_per_s']:.0f} frames/s")
        test = load_spi_run(str(folder / "test.h5"), SpiTransform(size=64, crop=SpiConfig().detector_px))
        for labels in args.labels:
            clf = spi_numbers(folder, labels, args.steps, test)
        torch.set_num_threads(1)
        batch = test.inputs[:64]
        frames = np.random.default_rng(0).poisson(1.0, (64, 128, 128))
        prepare = throughput(lambda fs: [clf.prepare(f, None) for f in fs], frames, repeats=3)
        print(f"SUMMARY Siamese SPI inference: {throughput(clf.class_scores, batch):.0f} images/s "
              f"(batch 64, 1 thread, transformed inputs); input transform {prepare:.0f} frames/s")
        cnn = HitCNN(in_channels=2, size=128).eval()
        x = torch.from_numpy(np.random.default_rng(0).random((64, 2, 128, 128), np.float32))
        with torch.inference_mode():
            rate = throughput(lambda b: cnn(b), x)
        print(f"SUMMARY hit/miss CNN inference: {rate:.0f} images/s (batch 64, 1 thread, 2x128x128 inputs)")


if __name__ == "__main__":
    main()
