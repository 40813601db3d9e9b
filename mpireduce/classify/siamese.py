"""Few-shot SPI classification (after SpeckleNN, seed 004): a Siamese embedding + class prototypes.

One CNN maps every pattern to a unit vector; it is trained with a triplet loss so that
patterns of one class lie closer to each other than to any other class (semi-hard or batch-hard
mining, :func:`triplet_loss`). A class is represented by its *prototype*, the normalised
mean embedding of its labelled support examples; a pattern gets the class scores
``softmax(-|e - p_c|^2 / temperature)``. New classes or particles need only new support
examples, not re-training. An :class:`EmbeddingEnsemble` of independently trained nets
(concatenated embeddings) scores with the members' mean squared distance.

Model file (``format = "mpireduce-siamese"``, version 1): a ``torch.save`` of a plain dict of
tensors and strings (loads with ``weights_only=True``)::

    {"format": ..., "format_version": 1, "state_dict": {...}, "prototypes": (C, D) tensor,
     "metadata": "<JSON>"}

Metadata: ``architecture``, ``transform`` (:class:`SpiTransform`), ``classes``,
``temperature``, ``thresholds`` (``hit``: on the summed score of the hit classes),
``hit_classes``, ``training_data`` (file names and sha256), and the trainer's provenance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .model import file_sha256, read_payload, write_payload
from .spi_transform import SpiTransform

FORMAT = "mpireduce-siamese"
FORMAT_VERSION = 1
SPI_CLASSES = ("no_hit", "single", "multi", "unintended")


class AnglePad(nn.Module):
    """Pad by one cell: circularly along the last (angle) axis, with zeros along the radius axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (1, 1, 0, 0), mode="circular")
        return nn.functional.pad(x, (0, 0, 1, 1))


def _block(in_channels: int, out_channels: int, circular: bool = False) -> list:
    pad = [AnglePad()] if circular else []
    return [*pad, nn.Conv2d(in_channels, out_channels, 3, padding=0 if circular else 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class EmbeddingNet(nn.Module):
    """Conv-BN-ReLU blocks with max pooling, global mean+max pooling, linear -> unit vector of ``dim``.

    ``circular``: inputs are (radius, angle) grids; convolutions wrap around the angle axis, so
    with the global pooling a rotation of the pattern (a shift along angle) barely changes the output.
    """

    def __init__(self, in_channels: int = 3, width: int = 16, dim: int = 32, circular: bool = False) -> None:
        super().__init__()
        self.in_channels, self.width, self.dim, self.circular = in_channels, width, dim, circular
        self.features = nn.Sequential(
            *_block(in_channels, width, circular), nn.MaxPool2d(2),
            *_block(width, 2 * width, circular), nn.MaxPool2d(2),
            *_block(2 * width, 4 * width, circular), nn.MaxPool2d(2),
            *_block(4 * width, 4 * width, circular))
        self.head = nn.Linear(8 * width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return nn.functional.normalize(self.head(pooled), dim=1)

    def kwargs(self) -> dict:
        return {"in_channels": self.in_channels, "width": self.width, "dim": self.dim, "circular": self.circular}


class EmbeddingEnsemble(nn.Module):
    """Several independently trained :class:`EmbeddingNet` s; their unit embeddings concatenated / sqrt(K).

    The output is again a unit vector, and its squared distance to a prototype concatenated
    the same way is the members' mean squared distance, so prototype scoring is unchanged.
    """

    def __init__(self, members: int = 1, **kwargs) -> None:
        super().__init__()
        self.members = nn.ModuleList(EmbeddingNet(**kwargs) for _ in range(members))
        self.dim = members * self.members[0].dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.members], dim=1) / len(self.members) ** 0.5

    def kwargs(self) -> dict:
        return {"members": len(self.members), **self.members[0].kwargs()}


def build_net(architecture: dict) -> nn.Module:
    """The untrained net an ``architecture`` metadata entry describes (name and kwargs)."""
    kinds = {"EmbeddingNet": EmbeddingNet, "EmbeddingEnsemble": EmbeddingEnsemble}
    if architecture.get("name") not in kinds:
        raise ValueError(f"unknown SPI architecture {architecture.get('name')!r}")
    return kinds[architecture["name"]](**architecture["kwargs"])


def triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float, mining: str = "semi-hard") -> torch.Tensor:
    """Triplet loss with online mining inside the batch.

    ``batch-hard``: per anchor, its farthest positive against its nearest negative.
    ``semi-hard`` (FaceNet): per anchor-positive pair, the nearest negative farther than the
    positive (the farthest negative when there is none); averaged over all pairs. Semi-hard
    avoids the collapse batch-hard often falls into from a random start on tiny training sets.
    """
    dist = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    if mining == "batch-hard":
        hardest_pos = dist.masked_fill(~same | eye, 0.0).amax(dim=1)
        hardest_neg = dist.masked_fill(same, float("inf")).amin(dim=1)
        valid = torch.isfinite(hardest_neg) & (same & ~eye).any(dim=1)
        losses = torch.relu(hardest_pos - hardest_neg + margin)[valid]
    elif mining == "semi-hard":
        anchor, positive = torch.nonzero(same & ~eye, as_tuple=True)
        d_ap = dist[anchor, positive]
        d_an = dist[anchor]  # (pairs, B)
        negative = ~same[anchor]
        semi = negative & (d_an > d_ap[:, None])
        nearest_semi = d_an.masked_fill(~semi, float("inf")).amin(dim=1)
        farthest = d_an.masked_fill(~negative, float("-inf")).amax(dim=1)
        chosen = torch.where(torch.isfinite(nearest_semi), nearest_semi, farthest)
        losses = torch.relu(d_ap - chosen + margin)[torch.isfinite(chosen)]
    else:
        raise ValueError(f"mining must be semi-hard or batch-hard, got {mining!r}")
    return losses.mean() if len(losses) else embeddings.sum() * 0.0


def embed(net: nn.Module, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Embeddings (N, dim) of stacked inputs, batched, in inference mode."""
    net.eval()
    device = next(net.parameters()).device
    out = np.empty((len(inputs), net.dim), np.float32)
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size], np.float32)).to(device)
            out[start:start + batch_size] = net(x).float().cpu().numpy()
    return out


def prototypes_of(embeddings: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Normalised mean embedding of each class (C, D); a class without examples is all-zero."""
    protos = np.zeros((n_classes, embeddings.shape[1]), np.float32)
    for c in range(n_classes):
        members = embeddings[labels == c]
        if len(members):
            mean = members.mean(axis=0)
            protos[c] = mean / max(np.linalg.norm(mean), 1e-12)
    return protos


def prototype_scores(embeddings: np.ndarray, prototypes: np.ndarray, temperature: float) -> np.ndarray:
    """Class probabilities (N, C): softmax of ``-squared distance / temperature``."""
    d2 = ((embeddings[:, None, :] - prototypes[None, :, :]) ** 2).sum(axis=2)
    logits = -d2 / temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass
class SiameseModel:
    """A loaded (or freshly trained) embedding net with its prototypes and metadata."""

    net: nn.Module  #: EmbeddingNet or EmbeddingEnsemble
    prototypes: np.ndarray  #: (C, D)
    transform: SpiTransform
    classes: Tuple[str, ...]
    temperature: float
    metadata: dict
    sha256: str = ""
    path: str = ""

    def class_scores(self, inputs: np.ndarray) -> np.ndarray:
        """(B, C) class probabilities for stacked transformed inputs."""
        expected = self.transform.output_shape
        if inputs.ndim != 4 or tuple(inputs.shape[1:]) != expected:
            raise ValueError(f"SPI model expects inputs (B, {', '.join(map(str, expected))}), got {inputs.shape}")
        return prototype_scores(embed(self.net, inputs), self.prototypes, self.temperature)


def save_siamese(path: Union[str, Path], net: EmbeddingNet, prototypes: np.ndarray, metadata: dict) -> str:
    """Write the model file atomically; returns its sha256. ``metadata`` needs transform and temperature."""
    for key in ("transform", "temperature"):
        if key not in metadata:
            raise ValueError(f"SPI model metadata needs {key!r}")
    meta = dict(metadata)
    meta.setdefault("architecture", {"name": type(net).__name__, "kwargs": net.kwargs()})
    meta.setdefault("classes", list(SPI_CLASSES))
    meta.setdefault("hit_classes", [c for c in meta["classes"] if c != "no_hit"])
    meta.setdefault("thresholds", {"hit": 0.5})
    meta.setdefault("torch_version", torch.__version__)
    meta.setdefault("created_utc", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "prototypes": torch.from_numpy(np.asarray(prototypes, np.float32).copy()),
        "metadata": json.dumps(meta),
    }
    return write_payload(path, payload)


def load_siamese(path: Union[str, Path], device: str = "cpu") -> SiameseModel:
    """Read a file written by :func:`save_siamese` onto ``device``; :class:`ModelError` if it is not one."""
    payload = read_payload(path, FORMAT, FORMAT_VERSION)
    try:
        meta = json.loads(payload["metadata"])
        net = build_net(meta["architecture"])
        net.load_state_dict(payload["state_dict"])
        transform = SpiTransform.from_dict(meta["transform"])
        prototypes = payload["prototypes"].numpy().astype(np.float32)
        classes = tuple(meta["classes"])
        temperature = float(meta["temperature"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"SPI model file {path} is inconsistent ({exc}); re-train it") from exc
    if prototypes.shape != (len(classes), net.dim):
        raise ModelError(f"SPI model file {path}: prototypes {prototypes.shape} do not match {len(classes)} classes")
    net.to(device).eval()
    return SiameseModel(net, prototypes, transform, classes, temperature, meta, file_sha256(path), str(path))


class SpiClassifier:
    """Batched SPI inference with the same interface as the hit/miss classifiers.

    ``scores`` is the summed probability of the hit classes (``keep_classes``, by default
    ``metadata["hit_classes"]``: every class but no_hit), so ``decide`` gives hit/miss like
    :class:`~mpireduce.classify.infer.CnnClassifier`; ``class_scores`` and ``predict`` give
    the four-class view, ``hit_scores`` the hit score from class probabilities.
    """

    name = "siamese"

    def __init__(self, model: SiameseModel, centre: Tuple[float, float], batch_size: int = 64,
                 threshold: Optional[float] = None, keep_classes: Optional[Sequence[str]] = None) -> None:
        self.model, self.centre, self.batch_size = model, centre, batch_size
        self.threshold = float(model.metadata.get("thresholds", {}).get("hit", 0.5) if threshold is None else threshold)
        hit = list(keep_classes or model.metadata.get("hit_classes", [c for c in model.classes if c != "no_hit"]))
        self.hit_index = [model.classes.index(c) for c in hit]
        self.keep_classes = hit
        self.class_names = tuple(model.classes)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return self.model.transform.output_shape

    def prepare(self, frame: np.ndarray, mask: Optional[np.ndarray], peaks=None) -> np.ndarray:
        return self.model.transform.apply(frame, mask, self.centre)

    def class_scores(self, inputs: np.ndarray) -> np.ndarray:
        """(B, C) class probabilities, computed ``batch_size`` inputs at a time."""
        parts = [self.model.class_scores(inputs[s:s + self.batch_size]) for s in range(0, len(inputs), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.model.classes)), np.float32)

    def hit_scores(self, class_probabilities: np.ndarray) -> np.ndarray:
        """(B,) summed probability of the kept classes, from (B, C) class probabilities."""
        return np.asarray(class_probabilities)[:, self.hit_index].sum(axis=1).astype(np.float32)

    def scores(self, inputs: np.ndarray) -> np.ndarray:
        return self.hit_scores(self.class_scores(inputs))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """(B,) index of the most likely class."""
        return self.class_scores(inputs).argmax(axis=1)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.threshold

    def describe(self) -> dict:
        return {"kind": self.name, "model": self.model.path, "model_sha256": self.model.sha256,
                "threshold": self.threshold, "batch_size": self.batch_size, "classes": list(self.model.classes),
                "keep_classes": self.keep_classes, "device": str(next(self.model.net.parameters()).device),
                "transform": self.model.transform.to_dict()}


def stack_inputs(transform: SpiTransform, frames: Sequence[np.ndarray], mask, centre) -> np.ndarray:
    """Transform and stack frames (N, 2, size, size)."""
    return np.stack([transform.apply(f, mask, centre) for f in frames]).astype(np.float32)
