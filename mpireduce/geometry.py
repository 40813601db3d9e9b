"""Detector geometry shared by the simulator, the detector and the descriptor.

Pixel coordinates follow the CXI/Cheetah convention: ``fs`` is the fast-scan (column,
x) index, ``ss`` the slow-scan (row, y) index, and (0, 0) is the centre of the first pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

#: HDF5 paths of the CXI instrument metadata (as in ../shared/data/real and the simulator)
DETECTOR_GROUP = "/entry_1/instrument_1/detector_1"
SOURCE_GROUP = "/entry_1/instrument_1/source_1"


@dataclass(frozen=True, eq=False)
class DetectorGeometry:
    """A flat detector: frame shape, beam centre, mask and (optionally) physics.

    ``mask`` is int8 with 1 = good pixel (CXI ``mask_good`` convention). ``panel_shape``
    is (asic_ss, asic_fs) of one panel when the frame is a grid of equal panels.
    """

    shape: tuple
    beam_center_fs: float
    beam_center_ss: float
    mask: np.ndarray
    pixel_size_m: Optional[float] = None
    distance_m: Optional[float] = None
    wavelength_A: Optional[float] = None
    panel_shape: Optional[tuple] = None

    def radius_px(self) -> np.ndarray:
        """Distance of every pixel centre from the beam centre, in pixels (float32)."""
        ss, fs = np.indices(self.shape, dtype=np.float32)
        return np.hypot(fs - self.beam_center_fs, ss - self.beam_center_ss).astype(np.float32)

    def azimuth(self) -> np.ndarray:
        """Azimuthal angle of every pixel around the beam centre, radians in [-pi, pi)."""
        ss, fs = np.indices(self.shape, dtype=np.float32)
        return np.arctan2(ss - self.beam_center_ss, fs - self.beam_center_fs).astype(np.float32)

    def has_physics(self) -> bool:
        """True when pixel size, distance and wavelength are all known."""
        return None not in (self.pixel_size_m, self.distance_m, self.wavelength_A)

    def resolution_A(self, radius_px) -> np.ndarray:
        """Resolution d (Angstrom) at a radius in pixels; inf at the beam centre."""
        if not self.has_physics():
            raise ValueError("resolution needs pixel_size_m, distance_m and wavelength_A")
        two_theta = np.arctan(np.asarray(radius_px) * self.pixel_size_m / self.distance_m)
        with np.errstate(divide="ignore"):
            return self.wavelength_A / (2.0 * np.sin(two_theta / 2.0))
