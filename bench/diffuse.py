"""Diffuse vs non-diffuse classification (seed 002: features + PCA(50) + logistic regression).

    python bench/diffuse.py [--train-frames 300] [--test-frames 300] [--detector 512x512] [--test-seeds 12 13]

Simulates (or reuses, from bench/out/diffuse/) a training run (seed 11) and test runs with
other seeds, every frame a crystal hit and half of them with diffuse scattering of random
strength; trains with ``mpireduce train --model diffuse`` on the first and evaluates as
``mpireduce evaluate`` does on the others (accuracy, per-class precision/recall, recall per
diffuse-strength bin), then inference images/s at batch 64 on one thread (features +
PCA + regression, and the PCA + regression part alone). The feature settings were chosen
looking at test seed 12; seed 13 was not used for any choice. Seed 002 reported 0.92 (P/R 95/90 diffuse, 89/95 non-diffuse).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter the runs are written with)
import numpy as np
import torch

from mpireduce.classify.command import read_geometry
from mpireduce.classify.diffuse import CLASSES, DiffuseClassifier, load_diffuse_model
from mpireduce.config import GeometryConfig
from mpireduce.evaluate import classification_metrics, evaluate_model, format_metrics
from mpireduce.simulate import SimulationConfig
from mpireduce.simulate.diffuse import read_diffuse_labels, simulate_diffuse_run

OUT = Path(__file__).resolve().parent / "out" / "diffuse"
DATA = "entry_1/data_1/data"


def make_run(name: str, seed: int, n_frames: int, detector: str) -> Path:
    """The run ``name`` (simulated unless already in bench/out/diffuse)."""
    path = OUT / f"{name}_s{seed}_n{n_frames}_{detector}.h5"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        summary = simulate_diffuse_run(path, SimulationConfig(n_frames=n_frames, detector=detector, seed=seed))
        print(f"simulated {path.name}: {summary['counts']} at {summary['frames_per_s']:.1f} frames/s")
    return path


def images_per_s(fn, repeats: int = 3) -> float:
    """Best rate over ``repeats`` calls of ``fn()`` that each handle 64 images."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 64 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-frames", type=int, default=300)
    parser.add_argument("--test-frames", type=int, default=300)
    parser.add_argument("--detector", default="512x512")
    parser.add_argument("--test-seeds", type=int, nargs="+", default=[12, 13],
                        help="seeds of the test runs (the feature settings were chosen on 12)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = make_run("train", 11, args.train_frames, args.detector)
    model_path = OUT / "diffuse_model.pt"
    command = [sys.executable, "-m", "mpireduce", "train", str(train), "-o", str(model_path), "--model", "diffuse",
               "--val-fraction", "0", "--overwrite"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    print(f"trained with: mpireduce train {train.name} --model diffuse --val-fraction 0 "
          f"({time.perf_counter() - start:.1f} s, features of every frame with the job's peaks masked)")
    for seed in args.test_seeds:
        test = make_run("test", seed, args.test_frames, args.detector)
        result = evaluate_model(str(model_path), str(test))
        metrics = classification_metrics(result.truth, result.predicted, CLASSES)
        print(format_metrics(metrics, f"test run seed {seed} ({len(result.truth)} frames)"))
        strength = read_diffuse_labels(test)["diffuse_strength"]
        correct = result.predicted == result.truth
        edges = [0.03, 0.05, 0.1, 0.2, 0.31]
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (strength >= lo) & (strength < hi)
            print(f"  diffuse strength {lo:.2f}-{hi:.2f}: recall {correct[sel].mean():.3f} ({sel.sum()} frames)")
    with h5py.File(test, "r") as f:
        geometry = read_geometry(f, str(test), GeometryConfig())
        sample = f[DATA][:64]
    clf = DiffuseClassifier(load_diffuse_model(model_path), geometry)
    inputs = np.stack([clf.prepare(frame, geometry.mask, None) for frame in sample])
    end_to_end = images_per_s(lambda: clf.scores(np.stack([clf.prepare(fr, geometry.mask, None) for fr in sample])))
    print(f"inference, batch {len(sample)} of {args.detector}, 1 thread: {end_to_end:.1f} images/s (features + model), "
          f"{images_per_s(lambda: clf.scores(inputs)):.0f} images/s (PCA + regression only)")


if __name__ == "__main__":
    main()
