"""Build the detector a job config asks for."""

from __future__ import annotations

from typing import Protocol

from ..backend import Backend
from ..config import DetectConfig
from ..errors import ConfigError
from ..geometry import DetectorGeometry
from .peaks import PeakTable
from .auto import AutoDetector
from .peakfinder8 import Peakfinder8


class Detector(Protocol):
    """What every detector offers: one frame in, one :class:`PeakTable` out."""

    name: str
    backend: Backend

    def find(self, frame) -> PeakTable:
        """Peaks of one frame (a 2-D array of ``geometry.shape``, any numeric dtype)."""
        ...


def make_detector(config: DetectConfig, geometry: DetectorGeometry, backend: Backend) -> Detector:
    """The detector for ``config.mode`` on ``geometry``, computing with ``backend``.

    Per-geometry work (radius bins, masks, windows) happens here, once; ``find`` is then
    called once per frame.
    """
    if config.mode == "peakfinder8":
        return Peakfinder8(config, geometry, backend)
    if config.mode == "auto":
        return AutoDetector(config, geometry, backend)
    raise ConfigError(f"detect.mode = {config.mode!r} is not supported; use 'peakfinder8' or 'auto'")
