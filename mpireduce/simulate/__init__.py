"""Simulated serial femtosecond crystallography (SFX) runs with ground truth.

``simulate_run`` writes a run in CXI layout plus a ``.truth.h5`` sidecar; ``simulate_frame``
renders single frames in memory; ``read_truth`` loads the sidecar. Frame ``i`` depends
only on ``(seed, i)``. The physics: random crystal orientations, reflections where the
Ewald sphere cuts the reciprocal lattice (Gaussian partiality), Wilson-distributed
intensities with a B-factor falloff, pixel-integrated Gaussian spots, air scatter and a
water ring, Poisson photon noise, panel gaps, a beamstop and bad pixels.
"""

from .detector import DetectorLayout, make_detector_layout, parse_detector_size
from .lattice import UNIT_CELLS
from .runfile import Truth, read_truth, simulate_run, truth_path
from .sfx import KIND_NAMES, RenderedFrame, SimulationConfig, render_frame, simulate_frame

__all__ = [
    "KIND_NAMES",
    "UNIT_CELLS",
    "DetectorLayout",
    "RenderedFrame",
    "SimulationConfig",
    "Truth",
    "make_detector_layout",
    "parse_detector_size",
    "read_truth",
    "render_frame",
    "simulate_frame",
    "simulate_run",
    "truth_path",
]
