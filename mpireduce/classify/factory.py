"""The job's classifier from its ``classify:`` settings: any model file ``mpireduce train`` writes.

The model file's ``format`` says what it holds, and so which classifier serves it:

========================  ==========================  ==========================================
format                    classifier                  needs from the run's geometry
========================  ==========================  ==========================================
``mpireduce-hitcnn``      :class:`.infer.CnnClassifier`        nothing (the CNN reads the frame)
  (DescriptorMLP inside)  :class:`.infer.DescriptorClassifier` pixel size, distance, wavelength
``mpireduce-diffuse``     :class:`.diffuse.DiffuseClassifier`  beam centre, pixel size, distance
``mpireduce-siamese``     :class:`.siamese.SpiClassifier`      beam centre
========================  ==========================  ==========================================

All of them follow :class:`.infer.Classifier` (batched ``prepare``/``scores``/``decide``);
the SPI classifier is also multi-class (``class_names``, ``class_scores``, ``hit_scores``).
torch is imported only once a model file is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..config import ClassifyConfig
from ..errors import ConfigError, ModelError
from .infer import Classifier, CnnClassifier, DescriptorClassifier, PeakCountRule

if TYPE_CHECKING:  # pragma: no cover
    from ..geometry import DetectorGeometry


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` must be usable."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("classify.device is 'cuda' but torch sees no GPU here; set classify.device: auto or cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"classify.device = {name!r} is not one of auto, cpu, cuda")
    return name


def model_path(config: ClassifyConfig, base_dir: str = ".") -> Path:
    """``config.model`` as a path; a relative one is taken relative to ``base_dir``."""
    path = Path(config.model).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def make_classifier(config: ClassifyConfig, base_dir: str = ".",
                    geometry: Optional["DetectorGeometry"] = None) -> Classifier:
    """The classifier ``config`` asks for: its model file's, or the peak rule when ``config.model`` is null.

    ``config.threshold`` overrides the threshold stored in the model file, and
    ``config.keep_classes`` a multi-class model's hit classes. Models that place regions
    on the detector need ``geometry`` (the run's :class:`DetectorGeometry`).
    """
    if not config.model:
        return PeakCountRule(config.min_peaks)
    from .model import read_model_file

    path = model_path(config, base_dir)
    if not path.is_file():
        raise ModelError(f"classifier model file {path} does not exist; "
                         "train one with 'mpireduce train' or fix classify.model")
    fmt = read_model_file(path)["format"]
    builder = _BUILDERS.get(fmt)
    if builder is None:
        raise ConfigError(f"{path} holds a {fmt!r} model; classify.model takes one of {sorted(_BUILDERS)}")
    return builder(path, config, geometry)


def _hit_cnn_file(path: Path, config: ClassifyConfig, geometry) -> Classifier:
    from .model import load_model

    model = load_model(path, device=resolve_device(config.device))
    if hasattr(model, "descriptor"):  # a LoadedDescriptorModel
        _require(geometry, path, "a descriptor model", physics=True)
        return DescriptorClassifier(model, geometry, batch_size=config.batch_size, threshold=config.threshold)
    return CnnClassifier(model, batch_size=config.batch_size, threshold=config.threshold)


def _diffuse_file(path: Path, config: ClassifyConfig, geometry) -> Classifier:
    from .diffuse import DiffuseClassifier, load_diffuse_model

    _require(geometry, path, "a diffuse-scattering model", physics=True)
    return DiffuseClassifier(load_diffuse_model(path), geometry, threshold=config.threshold)


def _siamese_file(path: Path, config: ClassifyConfig, geometry) -> Classifier:
    from .siamese import SpiClassifier, load_siamese

    _require(geometry, path, "an SPI model", physics=False)
    model = load_siamese(path, device=resolve_device(config.device))
    unknown = sorted(set(config.keep_classes or ()) - set(model.classes))
    if unknown:
        raise ConfigError(f"classify.keep_classes names {unknown}, which {path.name} does not know; "
                          f"its classes are {list(model.classes)}")
    return SpiClassifier(model, (geometry.beam_center_ss, geometry.beam_center_fs), batch_size=config.batch_size,
                         threshold=config.threshold, keep_classes=config.keep_classes)


def _require(geometry, path: Path, what: str, physics: bool) -> None:
    """ConfigError unless ``geometry`` is given (and, with ``physics``, knows pixel size, distance, wavelength)."""
    if geometry is None:
        raise ConfigError(f"{path} is {what}: it needs the detector geometry (pass geometry= to make_classifier)")
    if physics and not geometry.has_physics():
        raise ConfigError(f"{path} is {what}: it needs geometry.pixel_size_m, distance_m and wavelength_A "
                          "(in the job file or the input files)")


_BUILDERS = {"mpireduce-hitcnn": _hit_cnn_file, "mpireduce-diffuse": _diffuse_file,
             "mpireduce-siamese": _siamese_file}
