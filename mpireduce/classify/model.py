"""The hit/miss CNN and its model file.

Model file format (``format = "mpireduce-hitcnn"``, ``format_version = 1``): a
``torch.save`` of a plain dict holding only tensors, strings and ints, so it loads
with ``torch.load(path, weights_only=True)`` and no pickled code is ever executed::

    {"format": "mpireduce-hitcnn", "format_version": 1,
     "state_dict": {name: tensor, ...},
     "metadata": "<JSON text>"}

The metadata JSON holds ``architecture`` (``{"name": "HitCNN", "kwargs": {...}}``),
``transform`` (:meth:`InputTransform.to_dict`), ``threshold``, ``classes``
(``["miss", "hit"]``), and whatever provenance the trainer adds (training files with
sha256, label source, validation metrics, torch version, creation time).

The same file format holds the descriptor MLP (``architecture.name = "DescriptorMLP"``,
:mod:`.descriptor_model`): :func:`load_model` dispatches on the architecture name.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .transform import InputTransform

FORMAT = "mpireduce-hitcnn"
FORMAT_VERSION = 1
CLASSES = ("miss", "hit")


def _conv_block(in_channels: int, out_channels: int, stride: int = 1) -> list:
    """3x3 conv, batch norm, ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class HitCNN(nn.Module):
    """A stride-2 conv stem, conv-BN-ReLU-maxpool blocks, global max+mean pooling, linear -> 1 logit.

    ``width`` is the channel count of the stem (doubling up to ``4 * width``); ``depth``
    counts conv layers. The stem's 3x3 stride-2 kernels still cover every input cell, so
    an isolated bright cell (a peak) is seen. Batch norm makes training converge within a
    few epochs from any seed. Global pooling makes the network accept any input size;
    ``size`` is recorded so a model is only fed the size it was trained on. Weights and
    activations use channels-last memory: 3-4x faster on CPU here.
    """

    def __init__(self, in_channels: int = 2, size: int = 128, width: int = 8, depth: int = 4) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError("HitCNN depth must be >= 2")
        self.in_channels, self.size, self.width, self.depth = in_channels, size, width, depth
        layers = _conv_block(in_channels, width, stride=2)
        channels = width
        for level in range(1, depth):
            out = width * 2 ** min(level, 2)
            layers += _conv_block(channels, out)
            if level < depth - 1:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * channels, 1)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (B,) for inputs of shape (B, C, H, W)."""
        f = self.features(x.contiguous(memory_format=torch.channels_last))
        pooled = torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1)
        return self.head(pooled).squeeze(1)

    def kwargs(self) -> dict:
        """Constructor arguments, for the model file."""
        return {"in_channels": self.in_channels, "size": self.size, "width": self.width, "depth": self.depth}


ARCHITECTURES = {"HitCNN": HitCNN}


@dataclass
class LoadedModel:
    """A model read from a file, ready for inference on one device."""

    model: nn.Module
    transform: InputTransform
    threshold: float
    metadata: dict
    sha256: str
    path: str
    device: str = "cpu"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Hit probabilities in [0, 1], shape (B,), for a (B, C, H, W) batch."""
        expected = self.transform.output_shape
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"model expects inputs of shape (B, {', '.join(map(str, expected))}), got {batch.shape}")
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            scores = torch.sigmoid(self.model(x))
        return scores.float().cpu().numpy()


def file_sha256(path: Union[str, Path]) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(path: Union[str, Path], model: nn.Module, metadata: dict,
               required: tuple = ("transform", "threshold")) -> str:
    """Write ``model`` and ``metadata`` (JSON-serialisable) to ``path``; return its sha256.

    ``metadata`` must hold the ``required`` keys; ``architecture`` (from the model's
    ``kwargs()``), ``classes``, ``torch_version`` and ``created_utc`` are filled in.
    Written atomically (temp + rename).
    """
    for key in required:
        if key not in metadata:
            raise ValueError(f"model metadata needs {key!r}")
    meta = dict(metadata)
    meta.setdefault("architecture", {"name": type(model).__name__, "kwargs": model.kwargs()})
    meta.setdefault("classes", list(CLASSES))
    meta.setdefault("torch_version", torch.__version__)
    meta.setdefault("created_utc", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "state_dict": state, "metadata": json.dumps(meta)}
    return write_payload(path, payload)


def write_payload(path: Union[str, Path], payload: dict) -> str:
    """``torch.save`` a model-file dict (tensors, strings, ints only) atomically; return its sha256.

    Written as ``NAME.inprogress`` and renamed, so a killed training never leaves a file
    that looks like a model.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".inprogress")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return file_sha256(path)


def load_model(path: Union[str, Path], device: str = "cpu"):
    """Read a file written by :func:`save_model`; :class:`ModelError` if it is not one.

    Returns a :class:`LoadedModel` for a CNN, or a
    :class:`~mpireduce.classify.descriptor_model.LoadedDescriptorModel` for a descriptor MLP.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"classifier model file {path} does not exist; "
                         "train one with 'mpireduce train' or fix classify.model")
    payload = read_payload(path)
    meta = parse_metadata(payload, path)
    if architecture_name(meta) == "DescriptorMLP":
        from .descriptor_model import loaded_descriptor_model

        return loaded_descriptor_model(payload, meta, path, device)
    model = build_model(meta, payload["state_dict"], path)
    try:
        transform = InputTransform.from_dict(meta["transform"])
        threshold = float(meta["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model file {path} has invalid metadata ({exc}); re-train it") from exc
    model.to(device).eval()
    return LoadedModel(model, transform, threshold, meta, file_sha256(path), str(path), device)


def architecture_name(meta: dict):
    """The ``architecture.name`` a model file's metadata names (None when missing)."""
    arch = meta.get("architecture")
    return arch.get("name") if isinstance(arch, dict) else None


def read_model_file(path: Union[str, Path]) -> dict:
    """The ``weights_only`` payload dict of any mpireduce model file (it has a ``format`` key)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; train one first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise ModelError(f"{path} is not a torch model file ({exc}); is it corrupt?") from exc
        raise ModelError(
            f"{path} holds objects other than tensors and plain data, so it is refused "
            "(loading it could run arbitrary code); only files written by 'mpireduce train' load"
        ) from exc
    except Exception as exc:  # zip/EOF/format errors: torch raises several types
        reason = str(exc).split(". ")[0][:200]
        message = f"{path} is not a readable torch model file ({type(exc).__name__}: {reason}); is it corrupt?"
        raise ModelError(message) from exc
    if not isinstance(payload, dict) or "format" not in payload:
        raise ModelError(f"{path} is a torch file but not an mpireduce model (no format key); "
                         "train one with 'mpireduce train'")
    return payload


def read_payload(path: Union[str, Path], fmt: str = FORMAT, version: int = FORMAT_VERSION) -> dict:
    """The payload of a model file of format ``fmt``, checked for format and version."""
    payload = read_model_file(path)
    if payload["format"] != fmt:
        raise ModelError(f"{path} is a {payload['format']!r} model file, not {fmt!r}: "
                         "not an mpireduce model of this kind")
    if payload.get("format_version") != version:
        raise ModelError(f"{path} has model format version {payload.get('format_version')}; "
                         f"this mpireduce reads {version}")
    return payload


def parse_metadata(payload: dict, path: Path) -> dict:
    """The payload's metadata JSON as a dict."""
    try:
        meta = json.loads(payload["metadata"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model file {path} has no readable metadata; is it corrupt?") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"model file {path}: metadata is not a JSON object")
    return meta


def build_model(meta: dict, state_dict, path: Path, architectures: Optional[dict] = None) -> nn.Module:
    """The module ``meta["architecture"]`` names (one of ``architectures``), with ``state_dict`` loaded."""
    architectures = ARCHITECTURES if architectures is None else architectures
    arch = meta.get("architecture") or {}
    cls = architectures.get(arch.get("name"))
    if cls is None:
        raise ModelError(f"model file {path} uses architecture {arch.get('name')!r}; "
                         f"this mpireduce knows {sorted([*ARCHITECTURES, 'DescriptorMLP'])}")
    try:
        model = cls(**arch.get("kwargs", {}))
        model.load_state_dict(state_dict)
    except (TypeError, RuntimeError) as exc:
        raise ModelError(f"model file {path} does not match its architecture ({exc}); re-train it") from exc
    return model
