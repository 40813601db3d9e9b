"""The descriptor MLP: hit/miss from seed 000's peak counts per resolution shell x sector.

Its input is the raw vector of :class:`~mpireduce.detect.descriptor.Descriptor` (float32
peak counts, shell-major, ``n_shells * n_sectors``), the same numbers a job stores in
``/mpireduce/events/descriptor``. The network normalises the counts itself, so a model
file is self-contained::

    features = [log1p(counts),                  # per region, compresses bright hits
                shell_totals / max(total, 1),   # where in resolution the peaks are
                log1p(total)]                   # how many there are

Regions are defined in resolution, not pixels, so the same model reads any detector,
distance and wavelength. Training augments with rotations and mirror images of the
azimuth (cyclic shifts and reversals of the sectors): a crystal turned about the beam is
the same kind of frame.

Model file: the format of :mod:`.model` (``weights_only`` torch file, JSON metadata) with
``architecture = {"name": "DescriptorMLP", "kwargs": {...}}``, ``descriptor`` (the
:class:`DescriptorConfig` the vectors were computed with), ``detect`` (the
:class:`DetectConfig` that found the peaks) and ``threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch
from torch import nn

from ..config import DescriptorConfig
from ..errors import ConfigError, ModelError
from ..geometry import DetectorGeometry
from .model import build_model, file_sha256, save_model

ARCHITECTURE = "DescriptorMLP"
REQUIRED_METADATA = ("descriptor", "detect", "threshold")


class DescriptorMLP(nn.Module):
    """Normalised descriptor counts -> ``depth`` hidden ReLU layers of ``hidden`` units -> 1 logit."""

    def __init__(self, n_shells: int = 8, n_sectors: int = 8, hidden: int = 32, depth: int = 2) -> None:
        super().__init__()
        if min(n_shells, n_sectors, hidden, depth) < 1:
            raise ValueError("DescriptorMLP sizes must all be >= 1")
        self.n_shells, self.n_sectors, self.hidden, self.depth = n_shells, n_sectors, hidden, depth
        layers, width = [], self.n_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    @property
    def n_inputs(self) -> int:
        """Length of the descriptor vector the model reads."""
        return self.n_shells * self.n_sectors

    @property
    def n_features(self) -> int:
        """Length of the normalised feature vector (see :meth:`features`)."""
        return self.n_inputs + self.n_shells + 1

    def features(self, counts: torch.Tensor) -> torch.Tensor:
        """(B, n_inputs) raw counts -> (B, n_features) normalised features."""
        counts = counts.clamp(min=0.0)
        shells = counts.view(len(counts), self.n_shells, self.n_sectors).sum(dim=2)
        total = shells.sum(dim=1, keepdim=True)
        return torch.cat([torch.log1p(counts), shells / total.clamp(min=1.0), torch.log1p(total)], dim=1)

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        """Logits (B,) for raw descriptor counts (B, n_inputs)."""
        return self.head(self.body(self.features(counts))).squeeze(1)

    def kwargs(self) -> dict:
        """Constructor arguments, for the model file."""
        return {"n_shells": self.n_shells, "n_sectors": self.n_sectors, "hidden": self.hidden, "depth": self.depth}


def augment_descriptors(batch: torch.Tensor, generator: torch.Generator, n_shells: int,
                        n_sectors: int) -> torch.Tensor:
    """Each sample rotated about the beam by a random whole number of sectors, and mirrored half the time.

    Sector ``j`` spans turns ``[j, j + 1) / n_sectors`` of the azimuth, so the mirror image
    (azimuth -> -azimuth) maps it to ``n_sectors - 1 - j``.
    """
    n = len(batch)
    shift = torch.randint(0, n_sectors, (n, 1), generator=generator)
    mirror = torch.randint(0, 2, (n, 1), generator=generator).bool()
    sector = torch.arange(n_sectors).unsqueeze(0)
    source = torch.where(mirror, n_sectors - 1 - sector, sector)
    source = (source + shift) % n_sectors  # (n, n_sectors)
    grid = batch.view(n, n_shells, n_sectors)
    index = source.unsqueeze(1).expand(n, n_shells, n_sectors)
    return torch.gather(grid, 2, index).reshape(n, n_shells * n_sectors)


def truncate_resolution(batch: torch.Tensor, generator: torch.Generator, n_shells: int, n_sectors: int,
                        probability: float = 0.5) -> torch.Tensor:
    """With ``probability``, drop every shell from a random cutoff shell (1 .. n_shells - 1) on.

    A detector farther away, smaller or at a longer wavelength sees only the low-resolution
    shells; without this a model trained on one geometry takes a hit whose peaks all sit
    in the first shells for a powder ring or parasitic scatter.
    """
    n = len(batch)
    cut = torch.randint(1, max(n_shells, 2), (n, 1), generator=generator)
    use = torch.rand((n, 1), generator=generator) < probability
    keep = (torch.arange(n_shells).unsqueeze(0) < cut) | ~use
    return (batch.view(n, n_shells, n_sectors) * keep.unsqueeze(2)).reshape(n, n_shells * n_sectors)


def descriptor_features(config: DescriptorConfig) -> Callable[[DetectorGeometry], Callable]:
    """``features(geometry)`` for the trainer: the descriptor vector of a frame's peaks on that geometry."""
    from ..detect.descriptor import Descriptor

    def for_geometry(geometry: DetectorGeometry) -> Callable:
        descriptor = Descriptor(config, geometry)
        return lambda frame, mask, peaks: descriptor.compute(peaks)

    return for_geometry


@dataclass
class LoadedDescriptorModel:
    """A descriptor MLP read from a file, ready for inference on one device."""

    model: DescriptorMLP
    descriptor: DescriptorConfig
    threshold: float
    metadata: dict
    sha256: str
    path: str
    device: str = "cpu"

    @property
    def n_inputs(self) -> int:
        """Length of the descriptor vectors the model reads."""
        return self.model.n_inputs

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Hit probabilities in [0, 1], shape (B,), for (B, n_inputs) descriptor counts."""
        if batch.ndim != 2 or batch.shape[1] != self.n_inputs:
            raise ValueError(f"model expects descriptors of shape (B, {self.n_inputs}), got {batch.shape}")
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            scores = torch.sigmoid(self.model(x))
        return scores.float().cpu().numpy()


def save_descriptor_model(path: Union[str, Path], model: DescriptorMLP, metadata: dict) -> str:
    """Write a descriptor model file (metadata needs descriptor, detect, threshold); return its sha256."""
    descriptor = DescriptorConfig(**metadata.get("descriptor", {}))
    if descriptor.n_shells * descriptor.n_sectors != model.n_inputs:
        raise ValueError(f"descriptor config gives {descriptor.n_shells * descriptor.n_sectors} regions "
                         f"but the model reads {model.n_inputs}")
    return save_model(path, model, metadata, required=REQUIRED_METADATA)


def loaded_descriptor_model(payload: dict, meta: dict, path: Path, device: str = "cpu") -> LoadedDescriptorModel:
    """Build a :class:`LoadedDescriptorModel` from a checked payload (see :func:`.model.load_model`)."""
    model = build_model(meta, payload["state_dict"], path, {ARCHITECTURE: DescriptorMLP})
    try:
        missing = [key for key in REQUIRED_METADATA if key not in meta]
        if missing:
            raise KeyError(", ".join(missing))
        descriptor = DescriptorConfig(**{"shell_spacing": "inv_d2", **meta["descriptor"]})  # older files: 1/d^2
        descriptor.validate()
        threshold = float(meta["threshold"])
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ModelError(f"model file {path} has invalid descriptor-model metadata ({exc}); re-train it") from exc
    if descriptor.n_shells * descriptor.n_sectors != model.n_inputs:
        raise ModelError(f"model file {path}: its descriptor has {descriptor.n_shells} x {descriptor.n_sectors} "
                         f"regions but the network reads {model.n_inputs}; re-train it")
    model.to(device).eval()
    return LoadedDescriptorModel(model, descriptor, threshold, meta, file_sha256(path), str(path), device)
