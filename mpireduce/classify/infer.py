"""Batched hit/miss decisions: the one interface the reduction job uses.

Per event the job calls ``prepare(frame, mask, peaks)`` (cheap, host-side); per chunk it
stacks those inputs and calls ``scores`` once, then ``decide``::

    clf = make_classifier(job.classify, base_dir=job.base_dir)   # from .factory
    inputs = prepare_batch(clf, events)          # events: (frame, mask, peaks) tuples
    scores = clf.scores(inputs)                  # (B,) float32 in [0, 1]
    hits = clf.decide(scores)                    # (B,) bool

Every classifier scores in [0, 1] with ``hit = score >= threshold``, so output files
read the same whichever produced them: a CNN on a pooled image (:class:`CnnClassifier`),
an MLP on seed 000's descriptor (:class:`DescriptorClassifier`, which needs the detector
geometry) or the peak-count rule; :mod:`.diffuse` and :mod:`.siamese` hold the diffuse and
SPI classifiers, and :func:`.factory.make_classifier` picks one from the model file.

A multi-class classifier (SPI) also has ``class_names``, ``class_scores(inputs) -> (B, C)``
probabilities and ``hit_scores(class_probabilities) -> (B,)``; the job then runs the model
once per chunk for both, and stores the class probabilities with the events.
torch is only imported when a model is loaded.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Dict, Iterable, Optional, Protocol, Tuple

import numpy as np


if TYPE_CHECKING:  # pragma: no cover
    from ..geometry import DetectorGeometry
    from .descriptor_model import LoadedDescriptorModel


class Classifier(Protocol):
    """Scores events in batches; higher score = more hit-like."""

    name: str
    threshold: float

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """Shape of one prepared input (to build empty batches)."""

    def prepare(self, frame: np.ndarray, mask: Optional[np.ndarray], peaks) -> np.ndarray:
        """One event's input, a float32 array of ``input_shape``."""

    def scores(self, inputs: np.ndarray) -> np.ndarray:
        """Scores (B,) float32 in [0, 1] for stacked inputs (B, *input_shape)."""

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Hit decisions (B,) bool: ``scores >= threshold``."""

    def describe(self) -> dict:
        """Plain data for the output's provenance (kind, model sha256, threshold...)."""


class _TrainedClassifier:
    """What every trained model shares: batched scoring, the threshold, provenance."""

    name = "model"

    def __init__(self, model, batch_size: int = 64, threshold: Optional[float] = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model = model
        self.batch_size = batch_size
        self.threshold = float(model.threshold if threshold is None else threshold)

    def scores(self, inputs: np.ndarray) -> np.ndarray:
        return batched_predict(self.model, inputs, self.batch_size)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.threshold

    def detect_differences(self, detect) -> Dict[str, tuple]:
        """``{field: (at training, now)}`` for detector settings (a :class:`DetectConfig`)
        that differ from those the model was trained with: its inputs then see different
        peaks, and the job should warn. ``backend`` is ignored."""
        return _detect_differences(self.model.metadata, detect)

    def describe(self) -> dict:
        return {"kind": self.name, "model": self.model.path, "model_sha256": self.model.sha256,
                "threshold": self.threshold, "batch_size": self.batch_size, "device": self.model.device}


class CnnClassifier(_TrainedClassifier):
    """A trained :class:`~mpireduce.classify.model.HitCNN` run in batches of ``batch_size``."""

    name = "cnn"

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return self.model.transform.output_shape

    def prepare(self, frame: np.ndarray, mask: Optional[np.ndarray], peaks) -> np.ndarray:
        return self.model.transform.apply(frame, mask, peaks)

    def describe(self) -> dict:
        return dict(super().describe(), transform=self.model.transform.to_dict())


class DescriptorClassifier(_TrainedClassifier):
    """A trained descriptor MLP (:mod:`.descriptor_model`): peaks -> shell x sector counts -> score.

    The descriptor layout is the model's own (from its file), placed on this run's
    ``geometry``, which must know pixel size, distance and wavelength.
    """

    name = "descriptor"

    def __init__(self, model: "LoadedDescriptorModel", geometry: "DetectorGeometry", batch_size: int = 64,
                 threshold: Optional[float] = None) -> None:
        from ..detect.descriptor import Descriptor

        super().__init__(model, batch_size, threshold)
        self.descriptor = Descriptor(model.descriptor, geometry)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return (self.descriptor.size,)

    def prepare(self, frame: np.ndarray, mask: Optional[np.ndarray], peaks) -> np.ndarray:
        return self.descriptor.compute(peaks)

    def describe(self) -> dict:
        return dict(super().describe(), descriptor=dataclasses.asdict(self.model.descriptor))


def batched_predict(model, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """``model.predict`` over ``inputs`` in slices of ``batch_size``; (N,) float32."""
    out = np.empty(len(inputs), np.float32)
    for start in range(0, len(inputs), batch_size):
        out[start : start + batch_size] = model.predict(inputs[start : start + batch_size])
    return out


def _detect_differences(metadata: dict, detect) -> Dict[str, tuple]:
    """``{field: (at training, now)}`` of a model's recorded detect settings vs ``detect``."""
    trained = metadata.get("detect") or {}
    now = dataclasses.asdict(detect)
    return {k: (trained[k], now[k]) for k in trained if k != "backend" and k in now and trained[k] != now[k]}


class PeakCountRule:
    """The conventional rule: hit when a frame has at least ``min_peaks`` peaks.

    The score is ``n / (n + min_peaks)``, a monotone map of the peak count ``n`` into
    [0, 1) that equals 0.5 exactly at ``n == min_peaks``; so ``score >= 0.5`` is
    ``n >= min_peaks``. With ``min_peaks == 0`` every frame scores 1 (all hits).
    """

    name = "peak-count"
    threshold = 0.5

    def __init__(self, min_peaks: int) -> None:
        if min_peaks < 0:
            raise ValueError("min_peaks must be >= 0")
        self.min_peaks = int(min_peaks)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return (1,)

    def prepare(self, frame: np.ndarray, mask: Optional[np.ndarray], peaks) -> np.ndarray:
        return np.array([len(peaks)], np.float32)

    def scores(self, inputs: np.ndarray) -> np.ndarray:
        counts = np.asarray(inputs, np.float64).reshape(len(inputs), -1)[:, 0]
        if self.min_peaks == 0:
            return np.ones(len(counts), np.float32)
        return (counts / (counts + self.min_peaks)).astype(np.float32)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.threshold

    def describe(self) -> dict:
        return {"kind": self.name, "min_peaks": self.min_peaks, "threshold": self.threshold}


def prepare_batch(classifier: Classifier, events: Iterable[tuple]) -> np.ndarray:
    """Stack ``classifier.prepare`` of ``(frame, mask, peaks)`` tuples; (0, ...) when empty."""
    inputs = [classifier.prepare(frame, mask, peaks) for frame, mask, peaks in events]
    if not inputs:
        return np.empty((0, *classifier.input_shape), np.float32)
    return np.stack(inputs)
