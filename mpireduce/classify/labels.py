"""Where ``mpireduce train``'s hit/miss labels come from (``--labels``).

* ``truth``: the simulator's truth sidecar (``NAME.truth.h5``); every kind but ``miss`` is a hit.
* ``peaks``: seed 001's labels without hand labelling: the top quartile of peak counts are
  hits, the bottom quartile misses, the rest left out.
* a CSV file, for real data labelled by people or by another program: lines
  ``FILE,INDEX,LABEL`` with ``FILE`` a run's name (or path) as given to ``train``, ``INDEX``
  the event's index in it and ``LABEL`` ``hit``/``miss`` (or 1/0); ``#`` starts a comment,
  a first line ``file,index,label`` is a header. Events not listed are left out.

Labels are 1 (hit), 0 (miss) or -1 (not used).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

from ..errors import InputError

LABEL_SOURCES = ("truth", "peaks")
KIND_NAMES = ("miss", "hit", "weak", "multi")  #: simulator truth kinds; all but "miss" are hits
LABEL_WORDS = {"hit": 1, "1": 1, "miss": 0, "0": 0}


def event_labels(source: str, paths: List[str], run: np.ndarray, event: np.ndarray, n_peaks: np.ndarray,
                 truth_reader: Optional[Callable] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(labels, truth kind names or None) of the prepared events ``(run, event)`` of ``paths``."""
    if source == "truth":
        kinds = truth_kinds(paths, run, event, truth_reader)
        return (kinds != "miss").astype(np.int64), kinds
    if source == "peaks":
        return peak_quartile_labels(n_peaks), None
    return file_labels(source, paths, run, event), None


def file_labels(label_file: str, paths: List[str], run: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Labels of the prepared events from a ``FILE,INDEX,LABEL`` CSV (see the module docstring)."""
    table = _read_label_file(label_file, paths)
    labels = np.array([table.get((int(r), int(e)), -1) for r, e in zip(run, event)], np.int64)
    if not np.any(labels == 1) or not np.any(labels == 0):
        raise InputError(f"{label_file} labels {int(np.sum(labels == 1))} hits and {int(np.sum(labels == 0))} misses "
                         "among the training events; both are needed")
    return labels


def _read_label_file(label_file: str, paths: List[str]) -> dict:
    """``{(run index, event index): label}`` from the CSV; runs are matched by path or file name."""
    if not Path(label_file).is_file():
        raise InputError(f"--labels {label_file}: not 'truth', 'peaks' or an existing label file (FILE,INDEX,LABEL)")
    names = {}
    for i, p in enumerate(paths):
        names.setdefault(str(p), i)
        names.setdefault(Path(p).name, i)
    table = {}
    with open(label_file, newline="") as handle:
        rows = csv.reader(line for line in handle if line.strip() and not line.lstrip().startswith("#"))
        for number, row in enumerate(rows, start=1):
            if number == 1 and [c.strip().lower() for c in row] == ["file", "index", "label"]:
                continue
            if len(row) != 3 or not row[1].strip().isdigit():
                raise InputError(f"{label_file} row {number}: expected FILE,INDEX,LABEL, got {row}")
            file, index, word = (c.strip() for c in row)
            if file not in names:
                raise InputError(f"{label_file} row {number}: {file!r} is not one of the training runs {list(paths)}")
            if word.lower() not in LABEL_WORDS:
                raise InputError(f"{label_file} row {number}: label {word!r} is not hit, miss, 1 or 0")
            table[(names[file], int(index))] = LABEL_WORDS[word.lower()]
    return table


def truth_kinds(paths: List[str], run: np.ndarray, event: np.ndarray, reader: Optional[Callable] = None) -> np.ndarray:
    """Truth kind name of the events ``(run, event)`` of ``paths``, from the simulator's truth sidecars."""
    if reader is None:
        from ..simulate import read_truth as reader
    names = []
    for run_no, path in enumerate(paths):
        truth = reader(path)
        kinds = np.asarray(truth.kind)
        if kinds.dtype.kind in "iu":
            kinds = np.asarray(getattr(truth, "kind_names", KIND_NAMES))[kinds]
        needed = int(event[run == run_no].max(initial=-1)) + 1
        if len(kinds) < needed:
            raise InputError(f"truth for {path} lists {len(kinds)} events but the run has {needed}; "
                             "is it the right sidecar?")
        names.append(np.char.decode(kinds) if kinds.dtype.kind == "S" else kinds.astype(str))
    return np.array([names[r][e] for r, e in zip(run, event)])


def peak_quartile_labels(n_peaks: np.ndarray) -> np.ndarray:
    """Seed 001: top quartile of peak counts = hit (1), bottom quartile = miss (0), rest -1.

    Counts tied with a quartile boundary join that quartile (runs with many peak-less misses
    thus label all of them as misses); counts must separate, or there is nothing to learn.
    """
    low, high = np.percentile(n_peaks, [25, 75])
    if high <= low:
        raise InputError(f"peak counts do not separate (25th and 75th percentiles are both {low:g}); "
                         "use --labels truth or adjust the detector settings")
    labels = np.full(len(n_peaks), -1, np.int64)
    labels[n_peaks <= low] = 0
    labels[n_peaks >= high] = 1
    return labels


def recall_by_kind(kinds: np.ndarray, decided: np.ndarray) -> dict:
    """Fraction of events of each truth kind decided as hits."""
    return {str(k): float(np.mean(decided[kinds == k])) for k in np.unique(kinds)}
