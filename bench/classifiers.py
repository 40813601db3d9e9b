"""Numbers of the SPI few-shot classifier (issue 4): per-class P/R, macro-F1, unseen shape, throughput.

    python bench/classifiers.py [--labels 40 10] [--steps 250] [--frames 1200] [--verbose]

Simulates an SPI training run (seed 1) and an independent test run (seed 2), trains the
Siamese classifier (polar inputs, an ensemble of 3 nets trained --steps each with a triplet
loss, class prototypes) with N labelled events per class, octahedra never among them (they
are excluded from the training run's labelled events), and prints for each N, on the test run:

* per-class precision / recall / F1 and macro-F1 over the four classes;
* the unseen shape: macro-F1 over the test run's octahedron singles and multis plus its no_hit
  and unintended events, and the single/multi accuracy on the octahedra alone;

* the share of multi hits whose particles overlap across the beam (projected separation
  < 0.5 diameters: single-looking patterns) and their recall;

then inference images/s at batch 64 on one thread, with and without the input transform.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mpireduce.classify.siamese import SpiClassifier, load_siamese
from mpireduce.classify.spi_transform import SpiTransform
from mpireduce.classify.train_spi import build_parser, load_spi_run, train_from_args
from mpireduce.evaluate import classification_metrics, format_metrics
from mpireduce.simulate.spi import SpiConfig, read_spi_truth, simulate_spi_run

UNSEEN = "octahedron"
WEIGHTS = (0.4, 0.25, 0.2, 0.15)


def throughput(fn, batch, repeats: int = 5) -> float:
    """Images/s of ``fn(batch)`` (best of ``repeats`` after a warm-up)."""
    fn(batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(batch)
        best = min(best, time.perf_counter() - start)
    return len(batch) / best


def per_class_line(metrics: dict) -> str:
    return ", ".join(f"{name} P/R {m['precision']:.3f}/{m['recall']:.3f}" for name, m in metrics["per_class"].items())


def spi_numbers(folder: Path, labels: int, steps: int, test, verbose: bool) -> SpiClassifier:
    """Train with ``labels`` per class, print the test-run numbers; returns the classifier."""
    model_path = folder / f"spi{labels}.pt"
    args = build_parser().parse_args([str(folder / "train.h5"), "-o", str(model_path), "--labels-per-class",
                                      str(labels), "--exclude-shape", UNSEEN, "--steps", str(steps),
                                      "--threads", "1", "--overwrite"])
    start = time.perf_counter()
    train_from_args(args, report=lambda _: None)
    seconds = time.perf_counter() - start
    clf = SpiClassifier(load_siamese(model_path), test.centre)
    predicted = clf.predict(test.inputs)
    names = test.class_names
    overall = classification_metrics(test.labels, predicted, names)
    unseen = (test.shapes == UNSEEN) | np.isin(test.labels, [0, 3])
    m = classification_metrics(test.labels[unseen], predicted[unseen], names)
    particle = test.shapes == UNSEEN
    acc = float(np.mean(predicted[particle] == test.labels[particle]))
    truth = read_spi_truth(folder / "test.h5")
    multi = test.labels == 2
    for lo, hi in ((0.0, 0.5), (0.5, np.inf)):
        band = multi & (truth.separation >= lo) & (truth.separation < hi)
        print(f"{labels} labels/class: multi hits with projected separation {lo}-{hi} diameters: "
              f"{band.sum()} ({band.sum() / multi.sum():.1%}), recall {np.mean(predicted[band] == 2):.3f}")
    if verbose:
        print(format_metrics(overall, f"SPI test run, {labels} labels/class"))
        print(format_metrics(m, f"unseen {UNSEEN} (+ no_hit, unintended), {labels} labels/class"))
    print(f"{labels} labels/class (trained in {seconds:.0f} s): macro-F1 {overall['macro_f1']:.3f}; "
          f"{per_class_line(overall)}")
    print(f"{labels} labels/class, unseen {UNSEEN}: macro-F1 {m['macro_f1']:.3f}; {per_class_line(m)}; "
          f"single/multi accuracy {acc:.3f} ({particle.sum()} events)")
    return clf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[40, 10])
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--verbose", action="store_true", help="also print the confusion matrices")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, seed in (("train", 1), ("test", 2)):
            summary = simulate_spi_run(folder / f"{name}.h5", SpiConfig(args.frames, WEIGHTS, seed=seed))
            print(f"simulated {name} (seed {seed}): {summary['counts']}")
        test = load_spi_run(str(folder / "test.h5"), SpiTransform(size=64, crop=SpiConfig().detector_px))
        for labels in args.labels:
            clf = spi_numbers(folder, labels, args.steps, test, args.verbose)
        torch.set_num_threads(1)
        frames = np.random.default_rng(0).poisson(1.0, (64, 128, 128)).astype(np.int32)
        mask = np.ones((128, 128), np.int8)
        inputs = test.inputs[:64]
        excluded = throughput(clf.class_scores, inputs)
        included = throughput(lambda fs: clf.class_scores(np.stack([clf.prepare(f, mask) for f in fs])), frames, 3)
        print(f"inference, batch 64, 1 thread: {excluded:.0f} images/s transform excluded, "
              f"{included:.0f} images/s transform included")


if __name__ == "__main__":
    main()
