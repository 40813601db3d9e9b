"""Per-rank work on one chunk of events: read, check, detect, classify.

Bad frames (NaN/inf, wrong shape, unreadable) are not errors: they are skipped,
counted and recorded with a status in the event table.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

import numpy as np

from .detect.peaks import PeakTable
from .results import ChunkResult
from .sources import STATUS_NONFINITE, STATUS_OK, FrameReader

#: test hook: the global event number at which processing raises (checks abort handling)
FAULT_ENV = "MPIREDUCE_FAIL_AT_EVENT"


class ChunkProcessor:
    """Turns a range of events into a :class:`ChunkResult` on one rank."""

    def __init__(self, reader: FrameReader, detector, classifier, mask: np.ndarray, keep_frames: bool = True,
                 between_events: Callable[[], None] = lambda: None, descriptor=None):
        self.reader = reader
        self.descriptor = descriptor  # seed 000's region counts per event, or None
        self.between_events = between_events  # lets MPI messages progress while this rank computes
        self.detector = detector
        self.classifier = classifier
        self.mask = mask
        self.keep_frames = keep_frames
        fault = os.environ.get(FAULT_ENV)
        self._fault_at: Optional[int] = int(fault) if fault else None

    def process(self, chunk: int, start: int, stop: int, rank: int, then: Optional[tuple] = None) -> ChunkResult:
        """Read, detect and classify events ``[start, stop)``.

        ``then`` is the (start, stop) this rank processes next: a prefetching reader starts
        reading it while this chunk is computed.
        """
        clock = {"read": 0.0, "detect": 0.0, "classify": 0.0}
        t0 = time.perf_counter()
        frames, file_no, local, stamps, status = self.reader.read(start, stop)
        if then is not None and hasattr(self.reader, "prefetch"):
            self.reader.prefetch(*then)
        clock["read"] = time.perf_counter() - t0
        tables, inputs = self._detect(frames, status, start, clock)
        t0 = time.perf_counter()
        score, hit, class_scores = self._classify(inputs, status)
        clock["classify"] += time.perf_counter() - t0
        peak_event, peaks = ChunkResult.flatten_peaks(tables)
        kept = [frames[i] for i in np.flatnonzero(hit)] if self.keep_frames else []
        descriptor = np.stack([self.descriptor.compute(t) for t in tables]) if self.descriptor else None
        return ChunkResult(
            chunk=chunk, rank=rank, start=start, file_no=file_no, index_in_file=local,
            timestamp=stamps, status=status, n_peaks=np.array([len(t) for t in tables], np.int32),
            score=score, hit=hit, peak_event=peak_event, peaks=peaks, kept_frames=kept, seconds=clock,
            descriptor=descriptor, class_scores=class_scores,
        )

    def _detect(self, frames: list, status: np.ndarray, start: int, clock: dict):
        tables, inputs = [], []
        for row, frame in enumerate(frames):
            self.between_events()
            self._maybe_fail(start + row)
            if status[row] == STATUS_OK and not _finite(frame):
                status[row] = STATUS_NONFINITE
            if status[row] != STATUS_OK:
                tables.append(PeakTable.empty())
                inputs.append(None)
                continue
            t0 = time.perf_counter()
            peaks = self.detector.find(frame)
            t1 = time.perf_counter()
            inputs.append(self.classifier.prepare(frame, self.mask, peaks))
            clock["detect"] += t1 - t0
            clock["classify"] += time.perf_counter() - t1
            tables.append(peaks)
        return tables, inputs

    def _classify(self, inputs: list, status: np.ndarray):
        """(score, hit, class probabilities or None) of the chunk's events; NaN/False/NaN where not ok.

        A multi-class classifier (one with ``class_names``) is run once for its class
        probabilities, and its hit score is derived from them.
        """
        classes = getattr(self.classifier, "class_names", None)
        score = np.full(len(inputs), np.nan, np.float32)
        hit = np.zeros(len(inputs), bool)
        class_scores = np.full((len(inputs), len(classes)), np.nan, np.float32) if classes else None
        ok = np.flatnonzero(status == STATUS_OK)
        if len(ok):
            batch = np.stack([inputs[i] for i in ok])
            if classes:
                class_scores[ok] = self.classifier.class_scores(batch)
                score[ok] = self.classifier.hit_scores(class_scores[ok])
            else:
                score[ok] = self.classifier.scores(batch)
            hit[ok] = self.classifier.decide(score[ok])
        return score, hit, class_scores

    def _maybe_fail(self, event: int) -> None:
        if self._fault_at is not None and event == self._fault_at:
            raise RuntimeError(f"{FAULT_ENV}={event}: injected failure for testing")


def _finite(frame: np.ndarray) -> bool:
    if frame.dtype.kind != "f":
        return True
    return bool(np.isfinite(frame).all())
