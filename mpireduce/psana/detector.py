"""psana2 detector interfaces over :class:`mpireduce.psana.layout.DetectorData`.

Area detectors: ``det.raw.raw(evt)``, ``det.raw.calib(evt)``, ``det.raw.image(evt)``;
scalar (EPICS-like) detectors are called: ``det(evt)``. Every method returns ``None``
for an event in which the detector has no data.
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from .event import Event
from .layout import DetectorData


class DetectorNameError(KeyError):
    """An unknown detector name (psana2 raises a KeyError with this wording)."""

    def __init__(self, name: str, available: Iterable[str] = ()):
        message = (f"No available detector class matched with {name}. If this is a new "
                   "detector/version, make sure to add new class in detector folder.")
        names = sorted(available)
        if names:
            message += f" Detectors in this run: {', '.join(names)}."
        super().__init__(message)


class RawInterface:
    """``det.raw`` of an area detector: raw ADU, calibrated values and assembled images."""

    def __init__(self, data: DetectorData):
        self._data = data
        self._ped_f = _float_or_none(data.pedestals)
        self._gain_f = _float_or_none(data.gain)
        self._mask_f = _float_or_none(data.mask)

    def raw(self, evt: Event, copy: bool = True) -> Optional[np.ndarray]:
        """Raw data (segments, ss, fs) in the stored dtype, or None when absent."""
        return self._data.read(evt.index)

    def calib(self, evt: Event, **kwargs) -> Optional[np.ndarray]:
        """``(raw - pedestals) * gain * mask`` as float32 (constants the file lacks are skipped).

        psana's keyword options (``cmpars``, ``mbits``...) are accepted and ignored.
        """
        raw = self.raw(evt)
        return None if raw is None else self.calibrate(raw)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Apply this detector's constants to a raw array."""
        values = raw.astype(np.float32)
        if self._ped_f is not None:
            values -= self._ped_f
        if self._gain_f is not None:
            values *= self._gain_f
        if self._mask_f is not None:
            values *= self._mask_f
        return values

    def image(self, evt: Event, nda: Optional[np.ndarray] = None, value_for_missing_segments=None,
              **kwargs) -> Optional[np.ndarray]:
        """Segments of ``nda`` (default: ``calib(evt)``) placed in one 2-D image.

        With geometry each segment goes to its origin and uncovered pixels read 0 (or
        ``value_for_missing_segments``); without it, segments are stacked along ss.
        """
        if nda is None:
            nda = self.calib(evt)
        if nda is None or nda.ndim == 2:
            return nda
        if self._data.origin is None or self._data.image_shape is None:
            return np.concatenate(list(nda), axis=0)
        fill = 0 if value_for_missing_segments is None else value_for_missing_segments
        image = np.full(self._data.image_shape, fill, dtype=nda.dtype)
        for segment, (ss0, fs0) in zip(nda, self._data.origin):
            image[ss0 : ss0 + segment.shape[0], fs0 : fs0 + segment.shape[1]] = segment
        return image

    def _pedestals(self) -> Optional[np.ndarray]:
        """Pedestals (ADU) or None."""
        return self._data.pedestals

    def _gain(self) -> Optional[np.ndarray]:
        """Gain constants (photons per ADU) or None."""
        return self._data.gain

    def _mask(self, **kwargs) -> Optional[np.ndarray]:
        """Pixel mask (1 = good) or None."""
        return self._data.mask

    def _seg_geo_origin(self) -> Optional[np.ndarray]:
        """Segment origins (segments, 2) or None."""
        return self._data.origin


def _float_or_none(array: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """A constant as float32 (None stays None)."""
    return None if array is None else np.asarray(array, dtype=np.float32)


class AreaDetector:
    """An area detector of a run (``det.raw``)."""

    def __init__(self, data: DetectorData):
        self._data = data
        self.raw = RawInterface(data)
        self._det_name = data.name
        self._dettype = data.dettype

    def __repr__(self) -> str:
        return f"<AreaDetector {self._det_name!r} ({self._dettype})>"


class ScalarDetector:
    """A scalar (EPICS-like) detector: ``det(evt)`` is a float or None."""

    def __init__(self, data: DetectorData):
        self._data = data
        self._det_name = data.name
        self._dettype = data.dettype

    def __call__(self, evt: Event) -> Optional[float]:
        return self._data.read(evt.index)

    def __repr__(self) -> str:
        return f"<ScalarDetector {self._det_name!r}>"


class _MissingRaw:
    """``raw`` of a detector the run lacks: everything is None."""

    def raw(self, evt, *args, **kwargs):
        return None

    calib = image = raw


class MissingDetector:
    """What ``run.Detector(name, accept_missing=True)`` returns for an absent detector."""

    def __init__(self, name: str):
        self._det_name = name
        self.raw = _MissingRaw()

    def __call__(self, evt, *args, **kwargs):
        return None


def make_detector(data: DetectorData):
    """The psana2 interface of a detector, by its kind."""
    return ScalarDetector(data) if data.kind == "scalar" else AreaDetector(data)
