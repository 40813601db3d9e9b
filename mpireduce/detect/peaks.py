"""The peak table every detector returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PEAK_FIELDS = ("fs", "ss", "intensity", "npix", "max_value", "snr")


@dataclass(frozen=True)
class PeakTable:
    """Peaks of one frame, as host numpy arrays of equal length.

    ``fs``/``ss`` are intensity-weighted centroids in raw-array pixels (pixel (0, 0)
    centre = 0.0), ``intensity`` the background-subtracted integrated intensity,
    ``npix`` the number of pixels in the peak, ``max_value`` the highest pixel
    (background-subtracted) and ``snr`` the integrated signal over its noise.
    """

    fs: np.ndarray
    ss: np.ndarray
    intensity: np.ndarray
    npix: np.ndarray
    max_value: np.ndarray
    snr: np.ndarray

    def __len__(self) -> int:
        return len(self.fs)

    @classmethod
    def empty(cls) -> "PeakTable":
        f = np.zeros(0, np.float32)
        return cls(f, f, f, np.zeros(0, np.int32), f, f)

    def take(self, index) -> "PeakTable":
        """A new table with only the rows selected by ``index``."""
        return PeakTable(*(getattr(self, name)[index] for name in PEAK_FIELDS))
