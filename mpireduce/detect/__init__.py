"""Bragg-peak (keypoint) detection.

Every detector takes one frame and returns a :class:`PeakTable`; ``make_detector``
builds the one the job config asks for.
"""

from .peaks import PeakTable
from .factory import make_detector

__all__ = ["PeakTable", "make_detector"]
