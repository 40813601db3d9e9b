"""What one rank sends to rank 0 for one chunk of events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .detect.peaks import PEAK_FIELDS, PeakTable


@dataclass
class ChunkResult:
    """Decisions, peaks and kept frames for events ``start .. start + len(self) - 1``.

    Per-event arrays all have one row per event. Peaks of *every* event travel as a
    flat table (``peak_event`` = row of the event), so misses keep their peak lists too;
    ``kept_frames`` holds only the frames of events with ``hit`` true and status ok.
    """

    chunk: int
    rank: int
    start: int
    file_no: np.ndarray
    index_in_file: np.ndarray
    timestamp: np.ndarray
    status: np.ndarray
    n_peaks: np.ndarray
    score: np.ndarray
    hit: np.ndarray
    peak_event: np.ndarray
    peaks: dict
    kept_frames: list
    descriptor: Optional[np.ndarray] = None  #: (events, length) region counts, when computed
    class_scores: Optional[np.ndarray] = None  #: (events, classes) probabilities of a multi-class model
    seconds: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.status)

    def event_peaks(self, row: int) -> PeakTable:
        """The peak table of the event in ``row``."""
        sel = self.peak_event == row
        return PeakTable(*(self.peaks[name][sel] for name in PEAK_FIELDS))

    @staticmethod
    def flatten_peaks(tables: list) -> tuple:
        """(event row per peak, dict of concatenated peak columns) from per-event tables."""
        rows = np.concatenate([np.full(len(t), i, np.int32) for i, t in enumerate(tables)] or [np.zeros(0, np.int32)])
        columns = {
            name: np.concatenate([getattr(t, name) for t in tables]) if tables else getattr(PeakTable.empty(), name)
            for name in PEAK_FIELDS
        }
        return rows, columns
