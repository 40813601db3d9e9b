"""Training a :class:`HitCNN` on precomputed inputs, and choosing its threshold.

Everything here works on arrays: ``inputs`` (N, C, H, W) float32 from
:class:`InputTransform` and ``labels`` (N,) with 1 = hit, 0 = miss. Reading runs,
detecting peaks and labelling events is the command's job (:mod:`.command`).

Choices (after seed 001, adapted to small simulated runs): binary cross-entropy with
``pos_weight = n_miss / n_hit`` for class balance; Adam by default (seed 001's SGD with
momentum 0.9 via ``optimizer="sgd"``) with a cosine learning-rate decay, which made every
seed converge on a 300-frame simulated run in 20 epochs; random flips and 90 degree rotations as
augmentation; the threshold is the largest one that keeps ``target_sensitivity`` of the
validation hits, clipped into ``threshold_bounds``.

:func:`fit_descriptor` trains the descriptor MLP (:mod:`.descriptor_model`) the same way, on
(N, n_shells * n_sectors) count vectors, augmented by azimuthal rotations and mirrors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .model import HitCNN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    """Hyper-parameters of one training run (all recorded in the model file)."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3  #: Adam, cosine-decayed to 0 over the epochs (seed 001: SGD 0.002)
    optimizer: str = "adam"  #: adam | sgd (momentum 0.9, as seed 001)
    val_fraction: float = 0.2
    seed: int = 0
    width: int = 8  #: channels of the first conv block
    augment: bool = True  #: random flips and 90 degree rotations
    target_sensitivity: float = 1.0  #: fraction of validation hits the threshold keeps
    threshold_bounds: Tuple[float, float] = (0.05, 0.5)


@dataclass
class TrainResult:
    """A trained model, its threshold and what was measured on the validation split."""

    model: nn.Module  #: a HitCNN, or a DescriptorMLP from fit_descriptor
    threshold: float
    metrics: dict
    val_index: np.ndarray
    val_scores: np.ndarray
    history: List[float] = field(default_factory=list)  #: mean training loss per epoch


def split_indices(labels: np.ndarray, val_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Stratified random split into (train, validation) indices; each class keeps >= 1 in train."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        n_val = min(int(round(val_fraction * len(members))), len(members) - 1)
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each sample gets one of the 8 flips/rotations of the square (chosen at random)."""
    choice = torch.randint(0, 8, (len(batch),), generator=generator)
    out = batch.clone()
    for code in range(1, 8):
        picked = choice == code
        if picked.any():
            view = torch.rot90(batch[picked], code % 4, dims=(2, 3))
            out[picked] = view.flip(3) if code >= 4 else view
    return out


def predict_scores(model: nn.Module, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Sigmoid scores (N,) of ``model`` on ``inputs``, batched, without gradients."""
    model.eval()
    out = np.empty(len(inputs), np.float32)
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            x = torch.from_numpy(inputs[start : start + batch_size])
            out[start : start + batch_size] = torch.sigmoid(model(x)).numpy()
    return out


def choose_threshold(scores: np.ndarray, labels: np.ndarray, target_sensitivity: float = 1.0,
                     bounds: Tuple[float, float] = (0.05, 0.5)) -> float:
    """Largest threshold keeping ``target_sensitivity`` of the hits, clipped into ``bounds``."""
    hit_scores = np.sort(scores[labels == 1])
    if hit_scores.size == 0:
        return float(bounds[1])
    n_lost = int(np.floor((1.0 - target_sensitivity) * hit_scores.size + 1e-9))
    return float(np.clip(hit_scores[min(n_lost, hit_scores.size - 1)], *bounds))


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Sensitivity (hit recall), specificity (miss recall), accuracy and counts."""
    decided = scores >= threshold
    hits, misses = labels == 1, labels == 0
    tp, fn = int(np.sum(decided & hits)), int(np.sum(~decided & hits))
    tn, fp = int(np.sum(~decided & misses)), int(np.sum(decided & misses))
    return {
        "threshold": float(threshold),
        "sensitivity": tp / max(tp + fn, 1),
        "specificity": tn / max(tn + fp, 1),
        "accuracy": (tp + tn) / max(len(labels), 1),
        "tp": tp, "fn": fn, "tn": tn, "fp": fp,
    }


def _optimizer(model: nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    if options.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=options.lr, momentum=0.9)
    if options.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=options.lr)
    raise ValueError(f"optimizer must be adam or sgd, got {options.optimizer!r}")


def _train_epoch(model, optimizer, loss_fn, x: torch.Tensor, y: torch.Tensor,
                 options: TrainOptions, generator: torch.Generator, augmenter: Callable = augment) -> float:
    model.train()
    order = torch.randperm(len(x), generator=generator)
    total = 0.0
    for start in range(0, len(x), options.batch_size):
        index = order[start : start + options.batch_size]
        batch = augmenter(x[index], generator) if options.augment else x[index]
        optimizer.zero_grad()
        loss = loss_fn(model(batch), y[index])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(index)
    return total / len(x)


def fit(inputs: np.ndarray, labels: np.ndarray, options: TrainOptions,
        report: Callable[[str], None] = log.info, build: Optional[Callable[[], nn.Module]] = None,
        augmenter: Callable = augment, report_every: int = 1) -> TrainResult:
    """Train on a stratified split of ``inputs``/``labels`` and measure on the rest.

    ``build()`` makes the untrained model (default: a :class:`HitCNN` for the inputs' shape);
    ``augmenter(batch, generator)`` makes random variants of training batches; the loss is
    reported every ``report_every`` epochs and after the last.
    """
    labels = np.asarray(labels, np.int64)
    n_hit, n_miss = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    if n_hit < 2 or n_miss < 2 or n_hit + n_miss != len(labels):
        raise ValueError(f"training needs labels 0/1 with >= 2 of each class, got {n_hit} hits and {n_miss} misses")
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    train_idx, val_idx = split_indices(labels, options.val_fraction, options.seed)
    model = build() if build else HitCNN(in_channels=inputs.shape[1], size=inputs.shape[2], width=options.width)
    x = torch.from_numpy(np.ascontiguousarray(inputs[train_idx], np.float32))
    y = torch.from_numpy(labels[train_idx].astype(np.float32))
    pos_weight = torch.tensor([(y == 0).sum().item() / max((y == 1).sum().item(), 1)])
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimizer = _optimizer(model, options)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(options.epochs, 1))
    history = []
    for epoch in range(options.epochs):
        start = time.perf_counter()
        history.append(_train_epoch(model, optimizer, loss_fn, x, y, options, generator, augmenter))
        schedule.step()
        if (epoch + 1) % report_every == 0 or epoch + 1 == options.epochs:
            report(f"epoch {epoch + 1}/{options.epochs}: loss {history[-1]:.4f} ({time.perf_counter() - start:.1f} s)")
    return _evaluate(model, inputs, labels, train_idx, val_idx, options, history)


def fit_descriptor(vectors: np.ndarray, labels: np.ndarray, options: TrainOptions, n_shells: int, n_sectors: int,
                   hidden: int = 32, report: Callable[[str], None] = log.info) -> TrainResult:
    """Train a :class:`DescriptorMLP` on (N, n_shells * n_sectors) descriptor counts."""
    from .descriptor_model import DescriptorMLP, augment_descriptors, truncate_resolution

    if vectors.ndim != 2 or vectors.shape[1] != n_shells * n_sectors:
        raise ValueError(f"descriptor vectors must be (N, {n_shells * n_sectors}), got {vectors.shape}")
    return fit(np.ascontiguousarray(vectors, np.float32), labels, options, report,
               build=lambda: DescriptorMLP(n_shells, n_sectors, hidden),
               augmenter=lambda batch, gen: truncate_resolution(
                   augment_descriptors(batch, gen, n_shells, n_sectors), gen, n_shells, n_sectors),
               report_every=max(1, options.epochs // 10))


def _evaluate(model, inputs, labels, train_idx, val_idx, options: TrainOptions, history) -> TrainResult:
    """Pick the threshold on validation (training set if there is none) and measure."""
    pick = val_idx if len(val_idx) else train_idx
    scores = predict_scores(model, np.ascontiguousarray(inputs[pick], np.float32))
    threshold = choose_threshold(scores, labels[pick], options.target_sensitivity, options.threshold_bounds)
    metrics = {
        "split": "validation" if len(val_idx) else "training",
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        **binary_metrics(scores, labels[pick], threshold),
    }
    return TrainResult(model, threshold, metrics, pick, scores, history)
