"""``mpireduce evaluate MODEL RUN.h5``: how well a classifier does on a labelled (simulated) run.

The model kind is read from the file's ``format``: the hit/miss CNN or descriptor MLP
(``mpireduce-hitcnn``, whose inputs need the peaks of the detector settings stored in its
metadata) on an SFX run, the diffuse-scattering classifier (``mpireduce-diffuse``) on a
diffuse run, or the SPI Siamese classifier (``mpireduce-siamese``, four classes) on an SPI run. Printed and written to
``REPORT.txt``: the confusion matrix, per-class precision/recall/F1, macro-F1, accuracy,
and sensitivity/specificity of the binary hit/miss decision; ``REPORT.png`` shows the
confusion matrix and score histograms per truth class. torch is imported only by ``main``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from .errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mpireduce evaluate``."""
    parser.add_argument("model", metavar="MODEL.pt", help="model file written by mpireduce train (any --model)")
    parser.add_argument("run", metavar="RUN.h5", help="simulated run with its NAME.truth.h5 sidecar")
    parser.add_argument("--out", default="report", metavar="REPORT", help="writes REPORT.txt and REPORT.png")
    parser.add_argument("--max-events", type=int, default=0, help="evaluate at most this many events (0 = all)")


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, n) counts; row = truth class, column = predicted class."""
    truth, predicted = np.asarray(truth, np.int64), np.asarray(predicted, np.int64)
    return np.bincount(truth * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict:
    """Confusion matrix, per-class precision/recall/F1/support, macro-F1 and accuracy (plain data)."""
    cm = confusion_matrix(truth, predicted, len(names))
    per_class, f1s = {}, []
    for c, name in enumerate(names):
        tp, support, claimed = cm[c, c], cm[c].sum(), cm[:, c].sum()
        precision = tp / claimed if claimed else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(support)}
        if support:
            f1s.append(f1)
    return {"classes": list(names), "confusion": cm.tolist(), "per_class": per_class,
            "macro_f1": float(np.mean(f1s)) if f1s else 0.0, "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
            "n": int(cm.sum())}


def hit_miss_metrics(truth_hit: np.ndarray, decided_hit: np.ndarray) -> dict:
    """Sensitivity (hit recall), specificity (miss recall), precision, accuracy and counts."""
    truth_hit, decided_hit = np.asarray(truth_hit, bool), np.asarray(decided_hit, bool)
    tp, fn = int(np.sum(truth_hit & decided_hit)), int(np.sum(truth_hit & ~decided_hit))
    tn, fp = int(np.sum(~truth_hit & ~decided_hit)), int(np.sum(~truth_hit & decided_hit))
    return {"sensitivity": tp / max(tp + fn, 1), "specificity": tn / max(tn + fp, 1),
            "precision": tp / max(tp + fp, 1), "accuracy": (tp + tn) / max(len(truth_hit), 1),
            "tp": tp, "fn": fn, "tn": tn, "fp": fp}


def format_metrics(metrics: dict, title: str) -> str:
    """Confusion matrix and per-class table as text."""
    names = metrics["classes"]
    width = max(10, *(len(n) + 1 for n in names))
    lines = [f"== {title}: {metrics['n']} events, accuracy {metrics['accuracy']:.3f}, "
             f"macro-F1 {metrics['macro_f1']:.3f}",
             "confusion (rows = truth, columns = predicted)",
             " " * width + "".join(f"{n:>{width}}" for n in names)]
    lines += [f"{n:<{width}}" + "".join(f"{v:>{width}d}" for v in row) for n, row in zip(names, metrics["confusion"])]
    lines.append(f"{'class':<{width}}{'precision':>10}{'recall':>10}{'F1':>10}{'support':>10}")
    for name, m in metrics["per_class"].items():
        lines.append(f"{name:<{width}}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}{m['support']:>10d}")
    return "\n".join(lines)


def format_hit_miss(m: dict, decision: str = "hit/miss") -> str:
    """One line: sensitivity, specificity, precision and accuracy of a binary decision."""
    return (f"{decision}: sensitivity {m['sensitivity']:.3f}, specificity {m['specificity']:.3f}, "
            f"precision {m['precision']:.3f}, accuracy {m['accuracy']:.3f} "
            f"(tp {m['tp']}, fn {m['fn']}, tn {m['tn']}, fp {m['fp']})")


@dataclass
class Evaluation:
    """A model's outputs on a labelled run."""

    kind: str  #: "hitcnn", "descriptor", "diffuse" or "siamese"
    class_names: Sequence[str]  #: classes of ``truth`` / ``predicted``
    truth: np.ndarray  #: (N,) class index
    predicted: np.ndarray  #: (N,) class index
    hit_scores: np.ndarray  #: (N,) score of the hit decision
    threshold: float
    truth_hit: np.ndarray  #: (N,) bool
    extra_scores: Dict[str, np.ndarray]  #: more per-event scores to histogram (name -> (N,))


def evaluate_siamese(model_path: str, run: str, max_events: int = 0) -> Evaluation:
    """Four-class evaluation of an SPI Siamese model on an SPI run."""
    from .classify.siamese import SpiClassifier, load_siamese
    from .classify.spi_data import load_spi_run

    model = load_siamese(model_path)
    data = load_spi_run(run, model.transform, max_events)
    if tuple(data.class_names) != tuple(model.classes):
        raise InputError(f"{run} has classes {data.class_names} but the model {model.classes}")
    clf = SpiClassifier(model, data.centre)
    probabilities = clf.class_scores(data.inputs)
    hit = probabilities[:, clf.hit_index].sum(axis=1)
    extra = {f"P({name})": probabilities[:, i] for i, name in enumerate(model.classes) if name == "single"}
    return Evaluation("siamese", model.classes, data.labels, probabilities.argmax(axis=1), hit, clf.threshold,
                      data.labels != model.classes.index("no_hit"), extra)


def evaluate_hit_model(model_path: str, run: str, max_events: int = 0) -> Evaluation:
    """Hit/miss evaluation of a CNN or descriptor MLP from ``mpireduce train`` on an SFX run.

    Peaks are found with the detector settings stored in the model file, as in training;
    a descriptor model's regions are placed on the run's own geometry.
    """
    from .classify.infer import batched_predict
    from .classify.labels import truth_kinds
    from .classify.model import load_model

    model = load_model(model_path)
    if hasattr(model, "descriptor"):
        from .classify.descriptor_model import descriptor_features

        features, kind = descriptor_features(model.descriptor), "descriptor"
    else:
        features, kind = model.transform, "hitcnn"
    prepared = _prepare_as_trained(run, features, model.metadata, max_events)
    kinds = truth_kinds([run], prepared.run, prepared.event)
    scores = batched_predict(model, prepared.inputs, 64)
    truth = (kinds != "miss").astype(np.int64)
    predicted = (scores >= model.threshold).astype(np.int64)
    return Evaluation(kind, ("miss", "hit"), truth, predicted, scores, model.threshold, truth.astype(bool), {})


def evaluate_diffuse(model_path: str, run: str, max_events: int = 0) -> Evaluation:
    """Diffuse vs non-diffuse evaluation of a ``--model diffuse`` file on a diffuse run."""
    from .classify.diffuse import CLASSES, DiffuseFeatures, load_diffuse_model
    from .classify.train_diffuse import diffuse_labels

    model = load_diffuse_model(model_path)
    prepared = _prepare_as_trained(run, lambda geom: DiffuseFeatures(model.settings, geom).compute,
                                   model.metadata, max_events)
    truth = diffuse_labels([run], prepared.run, prepared.event)
    scores = model.predict(prepared.inputs)
    predicted = (scores >= model.threshold).astype(np.int64)
    return Evaluation("diffuse", CLASSES, truth, predicted, scores, model.threshold, truth.astype(bool), {})


def _prepare_as_trained(run: str, features, metadata: dict, max_events: int):
    """The run's model inputs, with peaks found by the detector settings stored in the model's metadata."""
    from .classify.command import default_detector_factory, prepare_runs
    from .config import DetectConfig, GeometryConfig

    detect = DetectConfig(**metadata.get("detect", {}))
    return prepare_runs([run], features, default_detector_factory(detect), GeometryConfig(), max_events)


EVALUATORS = {"mpireduce-hitcnn": evaluate_hit_model, "mpireduce-diffuse": evaluate_diffuse,
              "mpireduce-siamese": evaluate_siamese}


def evaluate_model(model_path: str, run: str, max_events: int = 0) -> Evaluation:
    """Dispatch on the model file's format (see :data:`EVALUATORS`)."""
    from .classify.model import read_model_file

    fmt = read_model_file(model_path)["format"]
    if fmt not in EVALUATORS:
        raise InputError(f"{model_path} has model format {fmt!r}; evaluate knows {', '.join(EVALUATORS)}")
    return EVALUATORS[fmt](model_path, run, max_events)


def report_text(result: Evaluation, model_path: str, run: str) -> str:
    """The whole text report of one evaluation."""
    metrics = classification_metrics(result.truth, result.predicted, result.class_names)
    binary = hit_miss_metrics(result.truth_hit, result.hit_scores >= result.threshold)
    title = f"{Path(model_path).name} ({result.kind}) on {Path(run).name}"
    decision = "diffuse/non-diffuse" if result.kind == "diffuse" else "hit/miss"
    return "\n".join([format_metrics(metrics, title), f"{decision} threshold {result.threshold:.3f}",
                      format_hit_miss(binary, decision)])


def write_figure(result: Evaluation, path: Path) -> None:
    """PNG: confusion matrix (row-normalised colours, counts printed) and score histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion_matrix(result.truth, result.predicted, len(result.class_names))
    panels = [("hit score", result.hit_scores), *result.extra_scores.items()]
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(5 * (1 + len(panels)), 4.4))
    ax = axes[0]
    ax.imshow(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(cm):
        ax.text(j, i, str(value), ha="center", va="center", color="black" if cm[i].sum() == 0 or
                value < 0.6 * cm[i].sum() else "white")
    ticks = range(len(result.class_names))
    ax.set_xticks(ticks, result.class_names, rotation=30)
    ax.set_yticks(ticks, result.class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title("confusion matrix")
    bins = np.linspace(0, 1, 41)
    for ax, (name, scores) in zip(axes[1:], panels):
        for c, cname in enumerate(result.class_names):
            if np.any(result.truth == c):
                ax.hist(scores[result.truth == c], bins=bins, histtype="step", lw=1.5, label=f"truth {cname}")
        if name == "hit score":
            ax.axvline(result.threshold, color="k", ls="--", lw=1, label="threshold")
        ax.set_yscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("events")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    """Run ``mpireduce evaluate``."""
    for path in (args.model, args.run):
        if not Path(path).is_file():
            raise InputError(f"{path} not found; check the path")
    result = evaluate_model(args.model, args.run, args.max_events)
    text = report_text(result, args.model, args.run)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.txt").write_text(text + "\n")
    write_figure(result, Path(f"{out}.png"))
    print(f"wrote {out}.txt and {out}.png")
    return 0


def run_cli(argv: Optional[Sequence[str]] = None) -> int:
    """``mpireduce evaluate`` without the launcher (for tests and scripts)."""
    parser = argparse.ArgumentParser(prog="mpireduce evaluate")
    add_arguments(parser)
    return main(parser.parse_args(argv))
