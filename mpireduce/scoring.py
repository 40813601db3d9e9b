"""Scoring detections and decisions against a simulation's truth.

How peaks are matched (printed by ``bench/score.py``): a found peak and a true spot
match when their centres are within ``radius`` pixels (2 px by default), one-to-one,
closest pairs first. *Recall* = matched visible spots / visible spots (visible: the
simulator's ``spot_visible``, expected photons S with S / sqrt(S + B) >= 5).
*Precision* = found peaks within ``radius`` of any true spot, visible or not /
found peaks (a real but faint reflection found is not a false peak).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PeakScore:
    """Counts for peak precision/recall, addable over frames."""

    found: int = 0
    found_true: int = 0
    visible: int = 0
    visible_matched: int = 0

    def __iadd__(self, other: "PeakScore") -> "PeakScore":
        self.found += other.found
        self.found_true += other.found_true
        self.visible += other.visible
        self.visible_matched += other.visible_matched
        return self

    @property
    def precision(self) -> float:
        return self.found_true / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.visible_matched / self.visible if self.visible else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def match_pairs(a_xy: np.ndarray, b_xy: np.ndarray, radius: float) -> list:
    """One-to-one pairs (i, j) with |a_i - b_j| <= radius, closest first."""
    from scipy.spatial import cKDTree

    if len(a_xy) == 0 or len(b_xy) == 0:
        return []
    dist = cKDTree(a_xy).sparse_distance_matrix(cKDTree(b_xy), radius, output_type="coo_matrix")
    order = np.argsort(dist.data, kind="stable")
    used_a, used_b, pairs = set(), set(), []
    for i, j in zip(dist.row[order], dist.col[order]):
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((int(i), int(j)))
    return pairs


def score_peaks(found_fs, found_ss, true_fs, true_ss, true_visible, radius: float = 2.0) -> PeakScore:
    """Score one frame's found peaks against its true spots (see module docstring)."""
    found = np.column_stack([found_fs, found_ss]).astype(float).reshape(-1, 2)
    true = np.column_stack([true_fs, true_ss]).astype(float).reshape(-1, 2)
    visible = np.asarray(true_visible, bool)
    matched_any = match_pairs(found, true, radius)
    matched_visible = match_pairs(found, true[visible], radius)
    return PeakScore(found=len(found), found_true=len(matched_any),
                     visible=int(visible.sum()), visible_matched=len(matched_visible))


def kept_fraction_by_kind(kind: np.ndarray, kept: np.ndarray, kind_names) -> dict:
    """For each frame kind: (number of frames, fraction kept)."""
    out = {}
    for code, name in enumerate(kind_names):
        sel = kind == code
        out[name] = (int(sel.sum()), float(kept[sel].mean()) if sel.any() else float("nan"))
    return out


def score_output(output_path: str, run_path: str, radius: float = 2.0) -> dict:
    """Score a reduced file against the truth of the simulated run it was made from.

    Returns ``{"kept": {kind: (n, fraction kept)}, "peaks": PeakScore on true hits}``.
    """
    import h5py
    import hdf5plugin  # noqa: F401

    from .simulate import read_truth

    truth = read_truth(run_path)
    with h5py.File(output_path, "r") as handle:
        events = {name: handle[f"mpireduce/events/{name}"][()] for name in ("index_in_file", "hit", "file_index")}
        peaks = {name: handle[f"mpireduce/peaks/{name}"][()] for name in ("event", "fs", "ss")}
    if np.any(events["file_index"] != 0):
        raise ValueError("score_output expects a reduced file made from one simulated run")
    kind = truth.kind[events["index_in_file"]]
    peak_score = PeakScore()
    starts = np.searchsorted(peaks["event"], np.arange(len(kind) + 1))
    for event, frame in enumerate(events["index_in_file"]):
        if truth.kind_names[kind[event]] == "miss":
            continue
        sel = slice(starts[event], starts[event + 1])
        spots = truth.spots(int(frame))
        peak_score += score_peaks(peaks["fs"][sel], peaks["ss"][sel], spots["fs"], spots["ss"],
                                  spots["visible"], radius)
    return {"kept": kept_fraction_by_kind(kind, events["hit"], truth.kind_names), "peaks": peak_score}
