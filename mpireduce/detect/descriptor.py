"""Seed 000's frame descriptor: keypoint counts per resolution shell x azimuthal sector.

Regions are defined in reciprocal space, not pixels, so one descriptor layout means the
same thing on every detector geometry: shell edges are equally spaced in ``1/d``
(``shell_spacing: inv_d``, fine at low resolution, so a detector that sees only
d > 6 Angstrom still spreads a crystal's peaks over several shells while a powder ring
fills one) or in ``1/d^2`` (``inv_d2``) between ``d_max_A`` and ``d_min_A``, and sectors split the azimuth around the beam centre into equal angles,
sector 0 starting at angle -pi (the -fs direction) and turning towards +ss.
Peaks outside the resolution range are dropped. Raw counts are returned; a classifier
normalises them.
"""

from __future__ import annotations

from typing import List

import numpy as np

from ..config import DescriptorConfig
from ..errors import ConfigError
from ..geometry import DetectorGeometry
from .peaks import PeakTable


class Descriptor:
    """Maps a :class:`PeakTable` to a fixed-length float32 vector of peak counts."""

    def __init__(self, config: DescriptorConfig, geometry: DetectorGeometry) -> None:
        config.validate()
        if not geometry.has_physics():
            missing = [key for key in ("pixel_size_m", "distance_m", "wavelength_A")
                       if getattr(geometry, key) is None]
            raise ConfigError(
                "the descriptor needs resolution: set geometry." + ", geometry.".join(missing)
                + " in the job file (or store them in the input's /entry_1/instrument_1)")
        self.config = config
        self.geometry = geometry
        self.power = 1.0 if config.shell_spacing == "inv_d" else 2.0
        #: shell edges in 1/d or 1/d^2 (see ``shell_spacing``), increasing: n_shells + 1 values
        self.edges = np.linspace(config.d_max_A ** -self.power, config.d_min_A ** -self.power, config.n_shells + 1)

    @property
    def size(self) -> int:
        """Length of the vector: ``n_shells * n_sectors``."""
        return self.config.n_shells * self.config.n_sectors

    @property
    def names(self) -> List[str]:
        """Label of each entry, shell-major: ``shell{i}_sector{j}``."""
        return [f"shell{i}_sector{j}" for i in range(self.config.n_shells)
                for j in range(self.config.n_sectors)]

    def regions(self, fs: np.ndarray, ss: np.ndarray) -> np.ndarray:
        """Entry index of each position (fs, ss in pixels), -1 outside the resolution range."""
        geo = self.geometry
        dx = np.asarray(fs, np.float64) - geo.beam_center_fs
        dy = np.asarray(ss, np.float64) - geo.beam_center_ss
        x = geo.resolution_A(np.hypot(dx, dy)) ** -self.power
        shell = np.searchsorted(self.edges, x, side="right") - 1
        inside = (x >= self.edges[0]) & (x <= self.edges[-1])
        shell = np.minimum(shell, self.config.n_shells - 1)  # d == d_min_A: the last shell
        turn = (np.arctan2(dy, dx) + np.pi) / (2.0 * np.pi)  # [0, 1]
        sector = np.minimum((turn * self.config.n_sectors).astype(np.int64), self.config.n_sectors - 1)
        return np.where(inside, shell * self.config.n_sectors + sector, -1)

    def compute(self, peaks: PeakTable) -> np.ndarray:
        """Counts of ``peaks`` per (shell, sector), float32 of length :attr:`size`."""
        region = self.regions(peaks.fs, peaks.ss)
        counts = np.bincount(region[region >= 0], minlength=self.size)
        return counts.astype(np.float32)
