"""Numbers of the SPI few-shot classifier (issue 4): per-class P/R, macro-F1, unseen shape, throughput.

    python bench/classifiers.py [--labels 40 10] [--train-seeds 0 1] [--frames 1200] [--verbose]

Seeds. Simulates an SPI training run (simulator seed 1) and two independent test runs (seeds 2
and 4, 1200 frames each). For each N in ``--labels`` and each training seed in ``--train-seeds``
(the seed picks the N labelled events per class and initialises the nets) it trains the Siamese
classifier with the defaults of ``python -m mpireduce.classify.train_spi`` (polar inputs, an
ensemble of nets trained with a triplet loss, class prototypes), octahedra never among the
labelled events, and scores both test runs. The training settings (steps, augmentations,
ensemble size, ...) were chosen on separate *validation* runs (simulator seeds 3 and 5), never
on the test runs this bench reports. The supervised numbers use only the N labelled events per
class. The semi-supervised numbers (SpeckleNN has none) keep the same nets but refine the
prototypes with the training run's other events, unlabelled and without octahedra, by
pseudo-labels (``train_spi.refine_prototypes``, 3 iterations); the test runs are never used.
Printed for each N and training seed, supervised and semi-supervised:

* per-class precision / recall and macro-F1 over the four classes, on test runs 2 and 4 pooled
  (2400 events), and the macro-F1 of each test run;
* the unseen shape: macro-F1 over the test runs' octahedron singles and multis plus their no_hit
  and unintended events, and the single/multi accuracy on the octahedra alone;
* (supervised) the share of multi hits whose particles overlap across the beam (projected
  separation < 0.5 diameters: single-looking patterns) and their recall;

then per N the mean and spread (min-max) over training seeds, and inference images/s at
batch 64 on one thread, with and without the input transform.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mpireduce.classify.siamese import SpiClassifier, embed, load_siamese
from mpireduce.classify.spi_transform import SpiTransform
from mpireduce.classify.spi_data import load_spi_run
from mpireduce.classify.train_spi import build_parser, refine_prototypes, train_from_args
from mpireduce.evaluate import classification_metrics, format_metrics
from mpireduce.simulate.spi import SpiConfig, read_spi_truth, simulate_spi_run

UNSEEN = "octahedron"
WEIGHTS = (0.4, 0.25, 0.2, 0.15)
TRAIN_RUN_SEED, TEST_RUN_SEEDS = 1, (2, 4)  # validation runs (settings chosen there): seeds 3 and 5
REFINE_ITERATIONS = 3


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


def evaluate(clf: SpiClassifier, tests: list, tag: str, verbose: bool, details: bool = True):
    """Print the numbers of ``clf`` on the pooled test runs; returns (macro-F1, unseen-shape macro-F1)."""
    predicted = [clf.predict(test.inputs) for _, test in tests]
    names = tests[0][1].class_names
    per_run = [classification_metrics(test.labels, p, names)["macro_f1"] for (_, test), p in zip(tests, predicted)]
    truth_labels = np.concatenate([test.labels for _, test in tests])
    shapes = np.concatenate([test.shapes for _, test in tests])
    predicted = np.concatenate(predicted)
    overall = classification_metrics(truth_labels, predicted, names)
    unseen = (shapes == UNSEEN) | np.isin(truth_labels, [0, 3])
    m = classification_metrics(truth_labels[unseen], predicted[unseen], names)
    particle = shapes == UNSEEN
    acc = float(np.mean(predicted[particle] == truth_labels[particle]))
    if details:
        separation = np.concatenate([read_spi_truth(path).separation for path, _ in tests])
        band = (truth_labels == 2) & (separation < 0.5)
        print(f"{tag}: multi hits with projected separation < 0.5 diameters: {band.sum()} "
              f"({band.sum() / np.sum(truth_labels == 2):.1%}), recall {np.mean(predicted[band] == 2):.3f}")
    if verbose:
        print(format_metrics(overall, f"SPI test runs, {tag}"))
        print(format_metrics(m, f"unseen {UNSEEN} (+ no_hit, unintended), {tag}"))
    runs = ", ".join(f"run {path.stem} {f1:.3f}" for (path, _), f1 in zip(tests, per_run))
    print(f"{tag}: macro-F1 {overall['macro_f1']:.3f} ({runs}); {per_class_line(overall)}")
    print(f"{tag}, unseen {UNSEEN}: macro-F1 {m['macro_f1']:.3f}; {per_class_line(m)}; "
          f"single/multi accuracy {acc:.3f} ({particle.sum()} events)")
    return overall["macro_f1"], m["macro_f1"]


def spi_numbers(folder: Path, labels: int, seed: int, train, tests: list, verbose: bool):
    """Train with ``labels`` per class and training ``seed``; print the supervised numbers and those
    with prototypes refined on the training run's unlabelled events (semi-supervised).

    Returns (supervised classifier, supervised (F1, unseen F1), semi-supervised (F1, unseen F1)).
    """
    model_path = folder / f"spi{labels}_{seed}.pt"
    args = build_parser().parse_args([str(folder / "train.h5"), "-o", str(model_path), "--labels-per-class",
                                      str(labels), "--exclude-shape", UNSEEN, "--seed", str(seed),
                                      "--threads", "1", "--overwrite"])
    start = time.perf_counter()
    train_from_args(args, report=lambda _: None)
    seconds = time.perf_counter() - start
    model = load_siamese(model_path)
    clf = SpiClassifier(model, tests[0][1].centre)
    tag = f"{labels} labels/class, training seed {seed}"
    print(f"{tag}: trained in {seconds:.0f} s")
    supervised = evaluate(clf, tests, tag, verbose)
    support = np.asarray(model.metadata["support"]["events"])
    pool = np.setdiff1d(np.flatnonzero(train.shapes != UNSEEN), support)
    refined = refine_prototypes(embed(model.net, train.inputs[support]), train.labels[support],
                                embed(model.net, train.inputs[pool]), len(model.classes), REFINE_ITERATIONS)
    semi = SpiClassifier(replace(model, prototypes=refined), clf.centre)
    semi_tag = f"{tag}, semi-supervised ({len(pool)} unlabelled training-run events)"
    return clf, supervised, evaluate(semi, tests, semi_tag, verbose, details=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[40, 10])
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--verbose", action="store_true", help="also print the confusion matrices")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, seed in (("train", TRAIN_RUN_SEED), *((f"test{s}", s) for s in TEST_RUN_SEEDS)):
            summary = simulate_spi_run(folder / f"{name}.h5", SpiConfig(args.frames, WEIGHTS, seed=seed))
            print(f"simulated {name} (seed {seed}): {summary['counts']}")
        transform = SpiTransform(size=64, crop=SpiConfig().detector_px)
        train = load_spi_run(str(folder / "train.h5"), transform)
        tests = [(folder / f"test{s}.h5", load_spi_run(str(folder / f"test{s}.h5"), transform)) for s in TEST_RUN_SEEDS]
        summary = []
        for labels in args.labels:
            results = [spi_numbers(folder, labels, seed, train, tests, args.verbose) for seed in args.train_seeds]
            if labels == args.labels[0]:
                clf = results[0][0]  # its throughput is measured
            for kind, column in (("supervised", 1), ("semi-supervised", 2)):
                f1, unseen = (np.array([r[column][i] for r in results]) for i in (0, 1))
                summary.append(f"{labels} labels/class, {kind}, over training seeds {args.train_seeds}: macro-F1 mean "
                               f"{f1.mean():.3f} (min {f1.min():.3f}, max {f1.max():.3f}); unseen {UNSEEN} macro-F1 "
                               f"mean {unseen.mean():.3f} (min {unseen.min():.3f}, max {unseen.max():.3f})")
        print("\n".join(summary))
        frames = np.random.default_rng(0).poisson(1.0, (64, 128, 128)).astype(np.int32)
        mask = np.ones((128, 128), np.int8)
        inputs = tests[0][1].inputs[:64]
        excluded = throughput(clf.class_scores, inputs)
        included = throughput(lambda fs: clf.class_scores(np.stack([clf.prepare(f, mask) for f in fs])), frames, 3)
        print(f"inference ({args.labels[0]} labels/class model), batch 64, 1 thread: {excluded:.0f} images/s "
              f"transform excluded, {included:.0f} images/s transform included")


if __name__ == "__main__":
    main()
