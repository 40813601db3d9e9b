"""``mpireduce train --model diffuse``: fit seed 002's diffuse-scattering classifier on labelled runs.

Every frame of the runs (written by ``mpireduce simulate --experiment diffuse``, whose
truth sidecar says which frames scatter diffusely) is turned into
:class:`~.diffuse.DiffuseFeatures` with the peaks the job's detector finds, as the job
will; a random ``--val-fraction`` of each class is held out, the standardiser + PCA +
logistic regression (:func:`~.diffuse.fit_diffuse_model`) is fitted on the rest, and the
held-out accuracy and per-class precision/recall go into the model file with the
training files' sha256 and the detector settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Callable, List

import numpy as np

from ..errors import InputError
from .diffuse import CLASSES, DiffuseFeatures, FeatureSettings, fit_diffuse_model, save_diffuse_model


def diffuse_labels(paths: List[str], run: np.ndarray, event: np.ndarray) -> np.ndarray:
    """1 = diffuse, 0 = not, for events (``run`` index, ``event`` index) of ``paths``' truth sidecars."""
    from ..simulate.diffuse import read_diffuse_labels

    per_run = []
    for path in paths:
        try:
            per_run.append(read_diffuse_labels(path)["diffuse"].astype(np.int64))
        except (OSError, KeyError) as exc:
            raise InputError(f"{path} has no diffuse truth sidecar ({type(exc).__name__}); --model diffuse trains "
                             "on runs from 'mpireduce simulate --experiment diffuse'") from exc
    if any(len(per_run[r]) <= e for r, e in zip(run, event)):
        raise InputError("a truth sidecar lists fewer events than its run; is it the right sidecar?")
    return np.array([per_run[r][e] for r, e in zip(run, event)], np.int64)


def train_diffuse(args: argparse.Namespace, detect, geometry, detector_factory: Callable) -> int:
    """Prepare features, fit, validate and save; prints a summary. ``args`` are ``mpireduce train``'s."""
    from .command import prepare_runs
    from .model import file_sha256
    from .train import split_indices

    if args.labels != "truth":
        raise InputError("--model diffuse learns from the simulator's truth; peak-count labels say nothing "
                         "about diffuse scattering (use --labels truth)")
    settings = FeatureSettings()
    clock = time.perf_counter()
    prepared = prepare_runs(args.runs, lambda geom: DiffuseFeatures(settings, geom).compute, detector_factory,
                            geometry, args.max_events)
    seconds = {"prepare": round(time.perf_counter() - clock, 2)}
    print(f"prepared {len(prepared.inputs)} events in {seconds['prepare']:.1f} s")
    labels = diffuse_labels(args.runs, prepared.run, prepared.event)
    if len(np.unique(labels)) < 2:
        raise InputError("the training runs hold only one class; simulate runs with diffuse and plain frames")
    fit_index, val_index = split_indices(labels, args.val_fraction, args.seed)
    training = {"files": [{"file": Path(p).name, "sha256": file_sha256(p)} for p in args.runs],
                "counts": {c: int(np.sum(labels == i)) for i, c in enumerate(CLASSES)},
                "detect": dataclasses.asdict(detect), "seed": args.seed, "val_fraction": args.val_fraction}
    model = fit_diffuse_model(prepared.inputs[fit_index], labels[fit_index], settings,
                              metadata={"training": training, "label_source": "truth"})
    validation = _validation(model, prepared.inputs[val_index], labels[val_index])
    model.metadata.update(validation=validation, detect=dataclasses.asdict(detect), seconds=seconds)
    out = Path(args.output)
    sha = save_diffuse_model(out, model)
    if validation["n"]:
        print(f"held-out {validation['n']} events: accuracy {validation['accuracy']:.3f}, diffuse precision "
              f"{validation['precision']:.3f} recall {validation['sensitivity']:.3f}")
    print(f"wrote {out} (sha256 {sha[:16]}...)")
    return 0


def _validation(model, features: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, diffuse precision and recall (sensitivity) of ``model`` on held-out events (plain data)."""
    from ..evaluate import hit_miss_metrics

    if not len(labels):
        return {"n": 0}
    return dict(hit_miss_metrics(labels.astype(bool), model.predict(features) >= model.threshold), n=int(len(labels)))
