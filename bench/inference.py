"""Inference throughput of every model kind through the job's classifier interface (issue 4).

    python bench/inference.py [--batch 64] [--threads 1] [--device cpu|cuda]

Simulates small runs, trains each model kind with ``mpireduce train`` (its default
architecture; few epochs/steps, since speed does not depend on how well it learned), loads
it with :func:`mpireduce.classify.make_classifier` as ``mpireduce run`` does, and times on
real frames (1 Mpx SFX frames for the CNN, descriptor and diffuse models; 128 x 128 SPI frames):

* ``prepare``: per-event input preparation (``classifier.prepare``), images/s;
* ``model``: ``classifier.scores`` on a prepared batch of ``--batch``, images/s;
* ``both``: the two in sequence, the classify cost per event inside a job.

Peer: the hit/miss CNN in the same run (each row also as a ratio to it); best of 3
interleaved repeats. Peak detection is not included (the job times it separately).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (compressed runs)
import numpy as np
import torch

from mpireduce.backend import get_backend
from mpireduce.classify import make_classifier
from mpireduce.classify.command import read_geometry
from mpireduce.config import ClassifyConfig, DetectConfig, GeometryConfig
from mpireduce.detect import make_detector

OUT = Path(__file__).resolve().parent / "out" / "inference"
DATA = "/entry_1/data_1/data"


def mpireduce(*args) -> None:
    """Run an ``mpireduce`` command line (quietly unless it fails)."""
    proc = subprocess.run([sys.executable, "-m", "mpireduce", *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"mpireduce {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")


def make_inputs() -> dict:
    """Runs and trained model files (cached in bench/out/inference)."""
    OUT.mkdir(parents=True, exist_ok=True)
    files = {name: OUT / f"{name}.h5" for name in ("sfx_small", "sfx_1M", "diffuse_small", "spi")}
    recipes = {
        "sfx_small": ["--frames", 120, "--hit-fraction", 0.5, "--detector", "256x256", "--seed", 1],
        "sfx_1M": ["--frames", 64, "--hit-fraction", 0.5, "--detector", "1M", "--seed", 2],
        "diffuse_small": ["--experiment", "diffuse", "--frames", 60, "--detector", "256x256", "--seed", 3],
        "spi": ["--experiment", "spi", "--frames", 240, "--seed", 4],
    }
    for name, path in files.items():
        if not path.exists():
            mpireduce("simulate", path, *recipes[name])
    job = OUT / "auto.yaml"
    job.write_text("source: {files: sfx_small.h5}\ndetect: {mode: auto, backend: numpy}\n")
    models = {name: OUT / f"{name}.pt" for name in ("cnn", "descriptor", "diffuse", "spi")}
    recipes = {
        "cnn": [files["sfx_small"], "--epochs", 2],
        "descriptor": [files["sfx_small"], "--model", "descriptor", "--epochs", 5, "--detect-config", job],
        "diffuse": [files["diffuse_small"], "--model", "diffuse"],
        "spi": [files["spi"], "--model", "spi", "--spi=--labels-per-class 10 --steps 5 --threads 1"],
    }
    for name, path in models.items():
        if not path.exists():
            mpireduce("train", *recipes[name], "-o", path)
    return {"files": files, "models": models}


def events(run: Path, count: int, detect: DetectConfig):
    """(geometry, [(frame, mask, peaks)] for the first ``count`` frames of ``run``)."""
    with h5py.File(run, "r") as handle:
        geometry = read_geometry(handle, str(run), GeometryConfig())
        frames = handle[DATA][:count]
    detector = make_detector(detect, geometry, get_backend("numpy"))
    return geometry, [(frame, geometry.mask, detector.find(frame)) for frame in frames]


def best_rate(fn, n: int, repeats: int = 3) -> float:
    """Best items/s over ``repeats`` calls of ``fn()`` that each handle ``n`` items."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def measure(models: dict, runs: dict, batch: int, device: str) -> dict:
    """{kind: (prepare images/s, model images/s)} interleaving kinds per repeat."""
    peaks_auto, peaks_pf8 = DetectConfig(mode="auto", backend="numpy"), DetectConfig(backend="numpy")
    sources = {"cnn": events(runs["sfx_1M"], batch, peaks_pf8), "descriptor": events(runs["sfx_1M"], batch, peaks_auto),
               "diffuse": events(runs["sfx_1M"], batch, peaks_pf8), "spi": events(runs["spi"], batch, peaks_pf8)}
    rates = {kind: [0.0, 0.0] for kind in models}
    for _ in range(3):
        for kind, path in models.items():
            geometry, evs = sources[kind]
            clf = make_classifier(ClassifyConfig(model=str(path), batch_size=batch, device=device), geometry=geometry)
            prepared = np.stack([clf.prepare(*e) for e in evs])
            clf.scores(prepared)  # warm-up
            prep = best_rate(lambda: [clf.prepare(*e) for e in evs], len(evs), 1)
            model = best_rate(lambda: clf.scores(prepared), len(prepared), 1)
            rates[kind] = [max(rates[kind][0], prep), max(rates[kind][1], model)]
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inputs = make_inputs()
    rates = measure(inputs["models"], inputs["files"], args.batch, args.device)
    both = {k: 1.0 / (1.0 / p + 1.0 / m) for k, (p, m) in rates.items()}
    print(f"batch {args.batch}, {args.threads} thread(s), device {args.device}; images/s (ratio to the CNN)")
    print(f"{'model':12s} {'prepare':>16s} {'model':>18s} {'both':>16s}")
    for kind, (prep, model) in rates.items():
        print(f"{kind:12s} {prep:9.0f} ({prep / rates['cnn'][0]:4.2f}x) {model:10.0f} ({model / rates['cnn'][1]:5.2f}x) "
              f"{both[kind]:9.0f} ({both[kind] / both['cnn']:4.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
