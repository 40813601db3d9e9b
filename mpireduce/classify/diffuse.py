"""Diffuse vs non-diffuse SFX frames: image features + PCA + logistic regression (seed 002).

Seed 002 fed VGG16 image features through PCA(50) into a logistic regression. Here the
image features are physical instead of ImageNet-learned (no pretrained weights needed)::

    frame / (solid angle x polarisation)   -> ring means = isotropic background b(r)
    Bragg peaks masked: pixels > b + 3 sqrt(b) + 2 and the peak table's spots, dilated
    z = (I - b) / sqrt(b)                   # ~ unit variance where there is only noise
    per resolution shell:  log <Z_s^2>  for block sums Z_s over s x s pixels (s = 1..16),
                           tails P(z > 2), P(z > 3), masked fraction, sector variance,
                           and the shell's share of the background

Diffuse scattering is spatially correlated on the scale of the reciprocal lattice, so the
normalised variance grows with the block size s while Poisson noise stays at 1. The
features are standardised, reduced by PCA (numpy SVD) and scored by an L2-regularised
logistic regression (Newton's method); ``score = P(diffuse)``.

Model file (``format = "mpireduce-diffuse"``, version 1), a ``torch.save`` of tensors and
JSON loaded with ``weights_only=True``: ``state_dict`` holds ``feature_mean``,
``feature_scale``, ``pca_components``, ``pca_scale``, ``lr_weight``, ``lr_bias`` (float64);
``metadata`` holds ``architecture`` (name + feature settings), ``classes``, ``threshold``,
``training`` (files with sha256, counts, accuracy) and ``explained_variance``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
from scipy import ndimage

from ..errors import ModelError
from ..geometry import DetectorGeometry

FORMAT, FORMAT_VERSION = "mpireduce-diffuse", 1
ARCHITECTURE = "DiffusePcaLogistic"
CLASSES = ("non_diffuse", "diffuse")
ARRAYS = ("feature_mean", "feature_scale", "pca_components", "pca_scale", "lr_weight", "lr_bias")


@dataclass(frozen=True)
class FeatureSettings:
    """How frames become feature vectors (stored in the model file)."""

    n_shells: int = 8  #: equal-width radial shells from the beamstop to the frame edge
    scales: Tuple[int, ...] = (1, 2, 4, 8, 16)  #: block sizes (pixels) of the variance features
    n_sectors: int = 16  #: azimuthal sectors per shell (for the sector variance)
    peak_sigma: float = 3.0  #: pixels above b + peak_sigma sqrt(b) + 2 are Bragg peaks
    dilate_px: int = 3  #: peak masks grow by this many pixels
    min_radius_px: float = 8.0  #: pixels closer to the beam are ignored

    @property
    def size(self) -> int:
        """Length of the feature vector."""
        return self.n_shells * (len(self.scales) + 5)


class DiffuseFeatures:
    """Computes the feature vector of frames of one detector ``geometry``."""

    def __init__(self, settings: FeatureSettings, geometry: DetectorGeometry) -> None:
        self.settings, self.shape = settings, tuple(geometry.shape)
        radius = geometry.radius_px()
        r_max = float(radius.max())
        self.ring = np.minimum(radius / 2.0, r_max / 2.0).astype(np.int64)  # 2-pixel rings
        shell = (radius - settings.min_radius_px) / (r_max + 1e-6 - settings.min_radius_px) * settings.n_shells
        self.shell = np.where(radius < settings.min_radius_px, -1, shell.astype(np.int64))
        sector = (geometry.azimuth() + np.pi) / (2 * np.pi) * settings.n_sectors
        self.region = self.shell * settings.n_sectors + np.minimum(sector.astype(np.int64), settings.n_sectors - 1)
        self.base_mask = (geometry.mask != 0) & (self.shell >= 0)
        self.correction = _solid_angle_polarisation(geometry)
        pad = int(np.lcm.reduce(settings.scales))
        self.padded = tuple(-(-n // pad) * pad for n in self.shape)
        shell_map = self._pad(np.where(self.shell >= 0, self.shell, 0).astype(np.float64))
        #: per block size, the (rounded mean) shell of each block: frame-independent, computed once
        self.block_shell = {k: np.rint(_block_sums(shell_map, k) / (k * k)).astype(np.int64) for k in settings.scales}
        self.dilation = 2 * settings.dilate_px + 1

    def compute(self, frame: np.ndarray, mask: Optional[np.ndarray] = None, peaks=None) -> np.ndarray:
        """The float32 feature vector of one frame (``peaks``: a PeakTable or None)."""
        s = self.settings
        good = self.base_mask & (frame >= 0) if mask is None else self.base_mask & (mask != 0) & (frame >= 0)
        flat = frame.astype(np.float64) / self.correction
        bg = self._background(flat, good)
        peak = frame > bg + s.peak_sigma * np.sqrt(bg) + 2.0
        if peaks is not None and len(peaks):
            ss = np.clip(np.rint(peaks.ss).astype(int), 0, self.shape[0] - 1)
            fs = np.clip(np.rint(peaks.fs).astype(int), 0, self.shape[1] - 1)
            peak[ss, fs] = True
        peak = ndimage.maximum_filter(peak.view(np.uint8), size=self.dilation, mode="constant").view(bool)
        valid = good & ~peak
        bg = self._background(flat, valid)
        z = np.where(valid, (frame - bg) / np.sqrt(np.maximum(bg, 1e-3)), 0.0)
        n = s.n_shells
        shell = np.where(valid, self.shell, n)
        count = np.maximum(np.bincount(shell.ravel(), minlength=n + 1)[:n], 1)
        feats = self._block_variances(z, valid)
        feats.append(np.bincount(shell.ravel(), (z > 2).ravel(), n + 1)[:n] / count)
        feats.append(np.bincount(shell.ravel(), (z > 3).ravel(), n + 1)[:n] / count)
        feats.append(1.0 - count / np.maximum(np.bincount(self.shell[good], minlength=n)[:n], 1))
        feats.append(self._sector_variance(z, valid))
        share = np.bincount(self.shell[valid], bg[valid], minlength=n)[:n] / count
        feats.append(np.log(share / max(share.sum(), 1e-9) + 1e-6))
        return np.concatenate([np.ravel(f) for f in feats]).astype(np.float32)

    def _background(self, flat: np.ndarray, use: np.ndarray) -> np.ndarray:
        """Ring means of the corrected frame over ``use``, back on the pixels."""
        total = np.bincount(self.ring[use], flat[use], minlength=self.ring.max() + 1)
        count = np.bincount(self.ring[use], minlength=self.ring.max() + 1)
        return (total / np.maximum(count, 1))[self.ring] * self.correction

    def _pad(self, a: np.ndarray) -> np.ndarray:
        """``a`` zero-padded to ``self.padded`` (a multiple of every block size)."""
        p = np.zeros(self.padded, a.dtype)
        p[: a.shape[0], : a.shape[1]] = a
        return p

    def _block_variances(self, z: np.ndarray, valid: np.ndarray) -> list:
        """Per block size k and shell, log of the mean square of k x k block sums of z over sqrt(pixels).

        Block sums of size k are summed from those of the previous size when it divides k
        (a pyramid: 1, 2, 4, ... costs about 4/3 of one pass over the frame).
        """
        n = self.settings.n_shells
        zs0, ns0 = self._pad(z), self._pad(valid.astype(np.float64))
        zs, ns, previous, out = zs0, ns0, 1, []
        for k in self.settings.scales:
            if k % previous:
                zs, ns, previous = zs0, ns0, 1
            zs, ns, previous = _block_sums(zs, k // previous), _block_sums(ns, k // previous), k
            use = ns >= 0.5 * k * k
            idx = self.block_shell[k][use]
            sq = np.bincount(idx, zs[use] ** 2 / ns[use], minlength=n)[:n]
            out.append(np.log(sq / np.maximum(np.bincount(idx, minlength=n)[:n], 1) + 1e-3))
        return out

    def _sector_variance(self, z: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Per shell, log of the mean square of normalised sector sums of z (anisotropy)."""
        n, m = self.settings.n_shells, self.settings.n_sectors
        region = self.region[valid]
        sums = np.bincount(region, z[valid], minlength=n * m)[: n * m]
        counts = np.maximum(np.bincount(region, minlength=n * m)[: n * m], 1)
        return np.log((sums**2 / counts).reshape(n, m).mean(axis=1) + 1e-3)


def _block_sums(a: np.ndarray, k: int) -> np.ndarray:
    """Sums over k x k blocks of a 2-D array whose sides are multiples of k."""
    if k == 1:
        return a
    return a.reshape(a.shape[0] // k, k, a.shape[1] // k, k).sum(axis=(1, 3))


def _solid_angle_polarisation(geometry: DetectorGeometry) -> np.ndarray:
    """Relative pixel solid angle x polarisation (all ones without physics)."""
    if not geometry.has_physics():
        return np.ones(geometry.shape)
    ss, fs = np.indices(geometry.shape, dtype=np.float64)
    x = (fs - geometry.beam_center_fs) * geometry.pixel_size_m
    y = (ss - geometry.beam_center_ss) * geometry.pixel_size_m
    length = np.sqrt(x * x + y * y + geometry.distance_m**2)
    return (geometry.distance_m / length) ** 3 * (1.0 - (x / length) ** 2)


@dataclass
class DiffuseModel:
    """Standardiser + PCA + logistic regression over :class:`DiffuseFeatures` vectors."""

    settings: FeatureSettings
    arrays: dict  #: the ARRAYS, float64 numpy
    threshold: float = 0.5
    metadata: dict = field(default_factory=dict)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """P(diffuse), (B,) float32, for (B, n_features) feature vectors."""
        a = self.arrays
        x = (np.asarray(features, np.float64) - a["feature_mean"]) / a["feature_scale"]
        logit = (x @ a["pca_components"].T / a["pca_scale"]) @ a["lr_weight"] + a["lr_bias"][0]
        return (0.5 * (1.0 + np.tanh(0.5 * logit))).astype(np.float32)


def fit_diffuse_model(features: np.ndarray, labels: np.ndarray, settings: FeatureSettings,
                      n_components: int = 50, l2: float = 1e-2, metadata: Optional[dict] = None) -> DiffuseModel:
    """Fit standardiser, PCA (``<= n_components``) and logistic regression to labelled vectors."""
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    x = (x - mean) / scale
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    k = max(1, min(n_components, len(sv), len(x) - 1))
    pca_scale = sv[:k] / np.sqrt(max(len(x) - 1, 1)) + 1e-9
    p = x @ vt[:k].T / pca_scale
    w, b = _logistic_newton(p, y, l2)
    arrays = dict(feature_mean=mean, feature_scale=scale, pca_components=vt[:k], pca_scale=pca_scale,
                  lr_weight=w, lr_bias=np.array([b]))
    meta = dict(metadata or {}, explained_variance=float((sv[:k] ** 2).sum() / (sv**2).sum()), l2=l2)
    return DiffuseModel(settings, arrays, 0.5, meta)


def _logistic_newton(x: np.ndarray, y: np.ndarray, l2: float, steps: int = 50) -> Tuple[np.ndarray, float]:
    """Weights and bias minimising mean log-loss + l2/2 |w|^2 (bias unpenalised), by Newton steps."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    theta = np.zeros(xb.shape[1])
    penalty = np.full(xb.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(steps):
        prob = 0.5 * (1.0 + np.tanh(0.5 * (xb @ theta)))
        grad = xb.T @ (prob - y) / len(y) + penalty * theta
        hess = (xb * (prob * (1 - prob))[:, None]).T @ xb / len(y) + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return theta[:-1], float(theta[-1])


def save_diffuse_model(path: Union[str, Path], model: DiffuseModel) -> str:
    """Write ``model`` (atomically) in the safe tensor + JSON format; return the file's sha256."""
    import torch

    from .model import write_payload

    settings = asdict(model.settings)
    meta = dict(model.metadata, architecture={"name": ARCHITECTURE, "kwargs": settings}, classes=list(CLASSES),
                threshold=model.threshold, torch_version=torch.__version__,
                n_components=int(len(model.arrays["pca_scale"])))
    meta.setdefault("created_utc", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    state = {name: torch.from_numpy(np.ascontiguousarray(model.arrays[name], np.float64)) for name in ARRAYS}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "state_dict": state, "metadata": json.dumps(meta)}
    return write_payload(path, payload)


def load_diffuse_model(path: Union[str, Path]) -> DiffuseModel:
    """Read a file written by :func:`save_diffuse_model`; :class:`ModelError` if it is not one."""
    from .model import file_sha256, read_payload

    payload = read_payload(path, FORMAT, FORMAT_VERSION)
    try:
        meta = json.loads(payload["metadata"])
        kwargs = dict(meta["architecture"]["kwargs"])
        settings = FeatureSettings(**dict(kwargs, scales=tuple(kwargs["scales"])))
        arrays = {name: payload["state_dict"][name].numpy().astype(np.float64) for name in ARRAYS}
        model = DiffuseModel(settings, arrays, float(meta["threshold"]), meta)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"diffuse model file {path} is inconsistent ({exc}); re-train it") from exc
    if arrays["pca_components"].shape[1] != settings.size:
        raise ModelError(f"diffuse model file {path}: PCA expects {arrays['pca_components'].shape[1]} "
                         f"features but its settings make {settings.size}; re-train it")
    model.metadata = dict(meta, sha256=file_sha256(path), path=str(path))
    return model


class DiffuseClassifier:
    """The :class:`~.infer.Classifier` interface: ``score = P(diffuse)``, diffuse when >= threshold."""

    name = "diffuse"

    def __init__(self, model: DiffuseModel, geometry: DetectorGeometry, threshold: Optional[float] = None) -> None:
        self.model = model
        self.features = DiffuseFeatures(model.settings, geometry)
        self.threshold = float(model.threshold if threshold is None else threshold)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return (self.model.settings.size,)

    def prepare(self, frame: np.ndarray, mask: Optional[np.ndarray], peaks) -> np.ndarray:
        return self.features.compute(frame, mask, peaks)

    def scores(self, inputs: np.ndarray) -> np.ndarray:
        return self.model.predict(np.asarray(inputs).reshape(len(inputs), -1))

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.threshold

    def describe(self) -> dict:
        meta = self.model.metadata
        return {"kind": self.name, "model": meta.get("path"), "model_sha256": meta.get("sha256"),
                "threshold": self.threshold, "classes": list(CLASSES), "features": asdict(self.model.settings)}
