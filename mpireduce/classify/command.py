"""``mpireduce train``: fit a hit/miss classifier on simulated (or labelled) CXI runs.

Steps: read every frame once, find its peaks with the team's detector, turn them into the
model's input (``--model cnn``: the :class:`InputTransform` image; ``--model descriptor``:
seed 000's shell x sector peak counts, which needs each run's pixel size, distance and
wavelength); label events (simulator truth, or seed 001's peak-count quartiles); train
(:mod:`.train`); save the model with its provenance (:mod:`.model`, :mod:`.descriptor_model`).
``--model diffuse`` fits seed 002's diffuse-scattering classifier (:mod:`.train_diffuse`);
``--model spi`` hands over to :mod:`mpireduce.classify.train_spi` when it is installed.
torch, h5py and the detector are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from ..config import DescriptorConfig, DetectConfig, GeometryConfig
from ..errors import InputError
from ..geometry import DETECTOR_GROUP, SOURCE_GROUP, DetectorGeometry
from .labels import event_labels, recall_by_kind
from .transform import InputTransform

log = logging.getLogger(__name__)

DATA_PATH = "/entry_1/data_1/data"
MASK_PATH = "/entry_1/data_1/mask"
MODELS = ("cnn", "descriptor", "diffuse", "spi")
DEFAULT_EPOCHS = {"cnn": 20, "descriptor": 100}
PHYSICS_PATHS = {"pixel_size_m": f"{DETECTOR_GROUP}/x_pixel_size", "distance_m": f"{DETECTOR_GROUP}/distance",
                 "wavelength_A": f"{SOURCE_GROUP}/wavelength_A"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mpireduce train``."""
    parser.add_argument("runs", nargs="+", metavar="RUN.h5", help="CXI run files to train on")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.pt", help="model file to write")
    parser.add_argument("--model", choices=MODELS, default="cnn",
                        help="cnn: image CNN; descriptor: MLP on seed 000's resolution-shell x sector peak "
                             "counts (transfers across geometries; use detect.mode auto); diffuse: features + "
                             "PCA + logistic regression on diffuse runs (seed 002); spi: few-shot Siamese (seed 004)")
    parser.add_argument("--labels", default="truth", metavar="truth|peaks|FILE.csv",
                        help="truth: simulator truth sidecar; peaks: top/bottom peak-count quartiles (seed 001); "
                             "FILE.csv: lines RUN,INDEX,hit|miss for labelled real data (default %(default)s)")
    parser.add_argument("--epochs", type=int, help="default 20 (cnn), 100 (descriptor)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3,
                        help="initial learning rate, cosine-decayed (seed 001: sgd 0.002)")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128,
                        help="side of the max-pooled input image, in cells (default %(default)s)")
    parser.add_argument("--width", type=int, default=8, help="channels of the first conv block")
    parser.add_argument("--hidden", type=int, default=32, help="descriptor MLP: units per hidden layer")
    parser.add_argument("--target-sensitivity", type=float, default=1.0,
                        help="fraction of validation hits the chosen threshold must keep")
    parser.add_argument("--max-events", type=int, default=0, help="use at most this many events per run (0 = all)")
    parser.add_argument("--detect-config", metavar="JOB.yaml",
                        help="take detect:, geometry: and descriptor: settings from this job file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    parser.add_argument("--spi", dest="spi_options", default="", metavar="'OPTIONS'",
                        help="--model spi: further train_spi options in one quoted string, "
                             "e.g. --spi='--labels-per-class 40 --steps 300'")


@dataclass
class Prepared:
    """Inputs of every event of the training runs, and where each came from."""

    inputs: np.ndarray  #: (N, C, size, size) float32
    n_peaks: np.ndarray  #: (N,) int
    run: np.ndarray  #: (N,) index into the run list
    event: np.ndarray  #: (N,) index inside its run


def read_geometry(handle, path: str, overrides: GeometryConfig) -> DetectorGeometry:
    """Frame shape, beam centre, mask and (when known) physics of one open CXI file (config values win)."""
    if DATA_PATH not in handle or handle[DATA_PATH].ndim != 3:
        raise InputError(f"{path} has no (N, ss, fs) frame stack at {DATA_PATH}; is it a CXI run?")
    shape = tuple(handle[DATA_PATH].shape[1:])
    mask = (handle[MASK_PATH][()] != 0).astype(np.int8) if MASK_PATH in handle else np.ones(shape, np.int8)
    centre = {}
    for axis, size in (("fs", shape[1]), ("ss", shape[0])):
        key = f"{DETECTOR_GROUP}/beam_center_{axis}_px"
        configured = getattr(overrides, f"beam_center_{axis}")
        centre[axis] = configured if configured is not None else (
            float(handle[key][()]) if key in handle else (size - 1) / 2)
    physics = {}
    for key, dataset in PHYSICS_PATHS.items():
        configured = getattr(overrides, key)
        physics[key] = float(configured) if configured is not None else (
            float(handle[dataset][()]) if dataset in handle else None)
    return DetectorGeometry(shape=shape, beam_center_fs=centre["fs"], beam_center_ss=centre["ss"], mask=mask,
                            **physics)


def default_detector_factory(detect: DetectConfig) -> Callable[[DetectorGeometry], object]:
    """Builds the team's peak detector (anything with ``find(frame) -> PeakTable``)."""
    from ..backend import get_backend
    from ..detect import make_detector

    backend = get_backend(detect.backend)
    return lambda geometry: make_detector(detect, geometry, backend)


def prepare_runs(paths: List[str], features, detector_factory, geometry: GeometryConfig,
                 max_events: int = 0) -> Prepared:
    """Detect peaks in and compute the inputs of every frame of ``paths`` (read one frame at a time).

    ``features`` is an :class:`InputTransform`, or ``features(geometry)`` gives a function
    ``(frame, mask, peaks) -> input`` for a run's :class:`DetectorGeometry`.
    """
    import h5py
    import hdf5plugin  # noqa: F401  (compressed simulated runs)

    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise InputError(f"training run(s) not found: {', '.join(missing)}; check the paths")
    inputs, n_peaks, runs, events = [], [], [], []
    for run_no, path in enumerate(paths):
        with h5py.File(path, "r") as handle:
            geom = read_geometry(handle, path, geometry)
            detector = detector_factory(geom)
            compute = features.apply if isinstance(features, InputTransform) else features(geom)
            data = handle[DATA_PATH]
            count = len(data) if not max_events else min(len(data), max_events)
            for index in range(count):
                frame = data[index]
                peaks = detector.find(frame)
                inputs.append(compute(frame, geom.mask, peaks))
                n_peaks.append(len(peaks))
        runs += [run_no] * count
        events += range(count)
    if not inputs:
        raise InputError("the training runs hold no frames")
    return Prepared(np.stack(inputs), np.array(n_peaks), np.array(runs), np.array(events))


def main(args: argparse.Namespace, detector_factory=None, truth_reader=None) -> int:
    """Run ``mpireduce train``; the two hooks let tests swap in stand-ins."""
    kind = getattr(args, "model", "cnn")
    if kind == "spi":
        return _train_spi(args)
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} exists; choose another -o or pass --overwrite")
    detect, geometry, descriptor = _detect_settings(args.detect_config)
    if kind == "diffuse":
        from .train_diffuse import train_diffuse

        return train_diffuse(args, detect, geometry, detector_factory or default_detector_factory(detect))
    if kind == "descriptor" and detect.mode != "auto":
        log.warning("detect.mode is %r: peakfinder8 thresholds are per experiment, so for a model meant to "
                    "serve other experiments train with detect.mode: auto (--detect-config)", detect.mode)
    features = InputTransform(size=args.size) if kind == "cnn" else _descriptor_features(descriptor)
    clock = time.perf_counter()
    prepared = prepare_runs(args.runs, features, detector_factory or default_detector_factory(detect),
                            geometry, args.max_events)
    seconds = {"prepare": round(time.perf_counter() - clock, 2)}
    print(f"prepared {len(prepared.inputs)} events in {seconds['prepare']:.1f} s")
    labels, kinds = event_labels(args.labels, args.runs, prepared.run, prepared.event, prepared.n_peaks, truth_reader)
    used = np.flatnonzero(labels >= 0)
    options = _train_options(args, kind)
    clock = time.perf_counter()
    result = _fit(kind, prepared.inputs[used], labels[used], options, descriptor, getattr(args, "hidden", 32))
    seconds["train"] = round(time.perf_counter() - clock, 2)
    metrics = dict(result.metrics)
    if kinds is not None:
        metrics["recall_by_kind"] = recall_by_kind(kinds[used][result.val_index], result.val_scores >= result.threshold)
    metadata = _metadata(args, detect, options, result, metrics, labels, seconds)
    if kind == "cnn":
        from .model import save_model

        sha = save_model(out, result.model, {"transform": features.to_dict(), **metadata})
    else:
        from .descriptor_model import save_descriptor_model

        sha = save_descriptor_model(out, result.model, {"descriptor": dataclasses.asdict(descriptor), **metadata})
    print(_summary(metrics, out, sha))
    return 0


def _descriptor_features(config: DescriptorConfig):
    from .descriptor_model import descriptor_features

    return descriptor_features(config)


def _fit(kind: str, inputs: np.ndarray, labels: np.ndarray, options, descriptor: DescriptorConfig, hidden: int):
    from . import train as training

    if kind == "cnn":
        return training.fit(inputs, labels, options, report=print)
    return training.fit_descriptor(inputs, labels, options, descriptor.n_shells, descriptor.n_sectors,
                                   hidden=hidden, report=print)


def _train_spi(args: argparse.Namespace) -> int:
    """``--model spi``: run :mod:`mpireduce.classify.train_spi` with the runs, ``-o``, ``--seed``,
    ``--max-events``, ``--overwrite`` given here and the ``--spi`` options."""
    try:
        module = importlib.import_module(f"{__package__}.train_spi")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.train_spi":
            raise
        raise InputError("--model spi needs mpireduce.classify.train_spi, which this installation "
                         "does not have; use --model cnn or descriptor") from exc
    argv = [*args.runs, "-o", str(args.output), "--seed", str(args.seed), "--max-events", str(args.max_events)]
    argv += ["--overwrite"] if args.overwrite else []
    return int(module.main(argv + shlex.split(getattr(args, "spi_options", ""))) or 0)


def _train_options(args: argparse.Namespace, kind: str = "cnn"):
    from .train import TrainOptions

    epochs = args.epochs if args.epochs is not None else DEFAULT_EPOCHS[kind]
    return TrainOptions(
        epochs=epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        val_fraction=args.val_fraction, seed=args.seed, width=args.width,
        target_sensitivity=args.target_sensitivity)


def _metadata(args, detect, options, result, metrics, labels, seconds) -> dict:
    """Everything the model file records about how it was made (less the model's input settings)."""
    from .. import __version__
    from .model import file_sha256

    return {
        "threshold": result.threshold,
        "label_source": args.labels,
        **({"label_file_sha256": file_sha256(args.labels)} if Path(args.labels).is_file() else {}),
        "training_data": [{"file": Path(p).name, "sha256": file_sha256(p)} for p in args.runs],
        "events": {"total": len(labels), "hits": int(np.sum(labels == 1)), "misses": int(np.sum(labels == 0))},
        "detect": dataclasses.asdict(detect),
        "training": {**dataclasses.asdict(options), "loss_history": [round(v, 5) for v in result.history]},
        "validation": metrics,
        "seconds": seconds,
        "mpireduce_version": __version__,
    }


def _detect_settings(job_file: Optional[str]):
    """(detect, geometry, descriptor) settings of a job file, or the defaults."""
    if not job_file:
        return DetectConfig(), GeometryConfig(), DescriptorConfig()
    from ..config import load_config

    job = load_config(job_file)
    return job.detect, job.geometry, job.descriptor


def _summary(metrics: dict, out: Path, sha: str) -> str:
    lines = [
        f"{metrics['split']} ({metrics['n_val']} events): threshold {metrics['threshold']:.3f}, "
        f"sensitivity {metrics['sensitivity']:.3f}, specificity {metrics['specificity']:.3f}, "
        f"accuracy {metrics['accuracy']:.3f}",
    ]
    if "recall_by_kind" in metrics:
        rates = ", ".join(f"{k} {v:.3f}" for k, v in metrics["recall_by_kind"].items())
        lines.append(f"hit rate by truth kind: {rates}")
    lines.append(f"wrote {out} (sha256 {sha[:16]}...)")
    return "\n".join(lines)
